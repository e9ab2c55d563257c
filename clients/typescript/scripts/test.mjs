// `npm test`: the compiled tests under Node's test runner, on Node 20 and 22 alike. The files are
// named here: Node 20's runner expands no glob, and Node 22's searches no folder.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";

const dir = "dist/test";
let files = [];
try {
  files = readdirSync(dir).filter((name) => name.endsWith(".test.js")).sort().map((name) => `${dir}/${name}`);
} catch {
  // no dist/ yet
}
if (files.length === 0) {
  console.error(`no tests in ${dir}: run \`npm run build\` first`);
  process.exit(1);
}
const run = spawnSync(process.execPath, ["--test", ...process.argv.slice(2), ...files], { stdio: "inherit" });
process.exit(run.status ?? 1);
