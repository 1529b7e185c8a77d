// ESLint flat config: type-aware typescript-eslint plus the project's dependency rule
// (docs/adr/0002-layering.md): the pure core imports no I/O library, only pkg/kube imports
// @kubernetes/client-node, and nothing under pkg/ imports cmd/ or test/.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const IO_MODULES = [
  'fs',
  'node:fs',
  'fs/promises',
  'node:fs/promises',
  'net',
  'node:net',
  'tls',
  'node:tls',
  'http',
  'node:http',
  'https',
  'node:https',
  'http2',
  'node:http2',
  'dgram',
  'node:dgram',
  'child_process',
  'node:child_process',
  'express',
  'undici',
  '@grpc/grpc-js',
  '@grpc/proto-loader',
  '@kubernetes/client-node',
  'prom-client',
];
const PURE_CORE = [
  'pkg/api/**',
  'pkg/policy/**',
  'pkg/errors/**',
  'pkg/admission/**',
  'pkg/reconcile/**',
  'pkg/conditions/**',
  'pkg/spiffe/**',
];
const noCmdOrTest = {
  group: ['**/cmd/**', '**/test/**'],
  message: 'pkg/ never imports cmd/ or test/: only cmd/ wires adapters together.',
};
const kubeOnlyInPkgKube = {
  name: '@kubernetes/client-node',
  message: 'Only pkg/kube may import @kubernetes/client-node.',
};

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'node_modules/**',
      'coverage/**',
      'hack/**',
      'jest.config.js',
      'eslint.config.js',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      'no-console': 'error',
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/explicit-module-boundary-types': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      '@typescript-eslint/consistent-type-imports': 'error',
      eqeqeq: ['error', 'always'],
    },
  },
  {
    files: ['pkg/**/*.ts'],
    ignores: ['pkg/kube/**'],
    rules: {
      'no-restricted-imports': ['error', { paths: [kubeOnlyInPkgKube], patterns: [noCmdOrTest] }],
    },
  },
  {
    files: ['pkg/kube/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [noCmdOrTest] }] },
  },
  {
    files: ['cmd/**/*.ts', 'test/**/*.ts', 'bench/**/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: { 'no-restricted-imports': ['error', { paths: [kubeOnlyInPkgKube] }] },
  },
  {
    files: PURE_CORE,
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: IO_MODULES.map((name) => ({
            name,
            message: 'The pure core does no I/O: pass data in, or move this to an adapter.',
          })),
          patterns: [noCmdOrTest],
        },
      ],
      'no-restricted-globals': [
        'error',
        { name: 'setTimeout', message: 'Pure core: pass time in.' },
        { name: 'setInterval', message: 'Pure core: pass time in.' },
        { name: 'fetch', message: 'Pure core does no I/O.' },
        { name: 'process', message: 'Pure core: pass configuration in.' },
      ],
      'no-restricted-syntax': [
        'error',
        {
          selector: "NewExpression[callee.name='Date'][arguments.length=0]",
          message: 'Pure core: pass `now` in instead of reading the clock.',
        },
        {
          selector: "CallExpression[callee.object.name='Date'][callee.property.name='now']",
          message: 'Pure core: pass `now` in instead of reading the clock.',
        },
        {
          selector: "CallExpression[callee.object.name='Math'][callee.property.name='random']",
          message: 'Pure core: pass randomness in.',
        },
      ],
    },
  },
  {
    // Tests may use shared builders and fixtures under test/.
    files: ['pkg/**/*.test.ts'],
    ignores: ['pkg/kube/**'],
    rules: { 'no-restricted-imports': ['error', { paths: [kubeOnlyInPkgKube] }] },
  },
  {
    files: ['**/*.test.ts', 'test/**/*.ts', 'bench/**/*.ts', 'cmd/**/*.ts'],
    rules: {
      '@typescript-eslint/explicit-module-boundary-types': 'off',
      '@typescript-eslint/unbound-method': 'off',
    },
  },
);
