// Type-aware lint: the rules that matter most for a storage daemon are the promise rules
// (an unhandled rejection is lost I/O) and exhaustive switches over state unions.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'native/build/**', '**/*.mjs', '**/*.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          // node:test's test()/describe() promises are tracked by the runner itself.
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['test', 'it', 'describe', 'suite'] },
          ],
        },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': [
        'error',
        { considerDefaultExhaustiveForUnions: true },
      ],
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      'no-console': 'off',
    },
  },
  {
    // The engine and the storage/transport contracts must not reach for the world directly:
    // time and randomness come through src/platform so the simulator can replay a seed.
    files: ['src/**/*.ts'],
    ignores: ['src/platform/**', 'src/cli/**', 'src/daemon/**', 'bench/**'],
    rules: {
      'no-console': 'error',
      'no-restricted-properties': [
        'error',
        { object: 'Math', property: 'random', message: 'use the injected Random (src/platform)' },
        { object: 'Date', property: 'now', message: 'use the injected Clock (src/platform)' },
      ],
    },
  },
  {
    files: ['src/replication/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: ['node:fs*', 'node:net', 'node:dgram', 'node:timers*', 'node:child_process'] },
      ],
      'no-restricted-globals': [
        'error',
        'setTimeout',
        'setInterval',
        'setImmediate',
        'queueMicrotask',
      ],
    },
  },
);
