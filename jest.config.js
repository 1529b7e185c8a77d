/** Jest runs TypeScript as native ESM through ts-jest (see docs/adr/0001-esm-and-jest.md). */
/** @type {import('jest').Config} */
export default {
  preset: 'ts-jest/presets/default-esm',
  testEnvironment: 'node',
  roots: ['<rootDir>/pkg', '<rootDir>/cmd', '<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  // test/e2e needs a real kube-apiserver, etcd, kubectl and helm: `make e2e` builds them and sets
  // ERPGUARD_E2E=1; `make test` leaves that tier out.
  testPathIgnorePatterns:
    process.env.ERPGUARD_E2E === '1' ? ['/node_modules/'] : ['/node_modules/', '/test/e2e/'],
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: {
    '^(\\.{1,2}/.*)\\.js$': '$1',
  },
  transform: {
    '^.+\\.ts$': [
      'ts-jest',
      { useESM: true, tsconfig: 'tsconfig.json', diagnostics: { warnOnly: false } },
    ],
  },
  testTimeout: 30000,
  // Real sockets and child processes: make sure a leaked handle fails loudly instead of hanging CI.
  forceExit: false,
  detectOpenHandles: false,
  maxWorkers: 2,
};
