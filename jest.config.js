/** One jest run for the whole repository: unit tests (*.test.ts) and integration tests
 * (*.int.test.ts, test/**). globalSetup starts a real redis-server on a free port. */
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: "node",
  roots: ["<rootDir>/apps", "<rootDir>/packages", "<rootDir>/test"],
  testMatch: ["**/*.test.ts"],
  transform: {
    "^.+\\.ts$": ["@swc/jest", { jsc: { target: "es2022", parser: { syntax: "typescript" } } }],
    "^.+\\.lua$": "<rootDir>/scripts/jest-lua-transform.js",
  },
  moduleFileExtensions: ["ts", "js", "json", "lua"],
  globalSetup: "<rootDir>/packages/testing/src/jest-global-setup.ts",
  globalTeardown: "<rootDir>/packages/testing/src/jest-global-teardown.ts",
  testTimeout: 60000,
  maxWorkers: 2,
};
