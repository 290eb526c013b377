// Lint rules that matter for a fail-closed runtime: a floating promise swallows the error
// that should have denied; a non-exhaustive switch silently ignores a new event kind.
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import importX from "eslint-plugin-import-x";

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**", "coverage/**", "bin/**", "**/*.mjs"] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { "import-x": importX },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/switch-exhaustiveness-check": [
        "error",
        { considerDefaultExhaustiveForUnions: true, requireDefaultForNonUnion: false },
      ],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/only-throw-error": "error",
      "import-x/no-cycle": "error",
      "no-restricted-properties": [
        "error",
        { object: "Date", property: "now", message: "Inject the clock (src/core/clock.ts)." },
        { object: "Math", property: "random", message: "Inject randomness." },
      ],
    },
  },
  {
    // Tests, benches, scenarios and CLI sit at the edge: wall clock is allowed there.
    files: ["test/**", "bench/**", "scenarios/**", "agents/**", "src/cli/**", "src/runtime/clock.ts"],
    rules: { "no-restricted-properties": "off" },
  },
  {
    files: ["test/**", "bench/**"],
    rules: {
      "@typescript-eslint/no-non-null-assertion": "off",
      "@typescript-eslint/no-unsafe-assignment": "off",
      "@typescript-eslint/no-unsafe-member-access": "off",
      "@typescript-eslint/no-unsafe-argument": "off",
      "@typescript-eslint/no-unsafe-call": "off",
    },
  },
);
