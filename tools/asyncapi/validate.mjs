// Validates AsyncAPI documents with the official parser (@asyncapi/parser, pinned in package.json).
// Usage: node validate.mjs FILE...   Prints one JSON line per file:
//   {"file": ..., "valid": bool, "diagnostics": [{"severity": "error|warning|info|hint", "code", "message", "path"}]}
// Exit status 1 if any document has an error-level diagnostic or yields no document.
import { readFile } from "node:fs/promises";
import { Parser } from "@asyncapi/parser";

const SEVERITY = ["error", "warning", "info", "hint"];
const parser = new Parser();
let failed = false;
for (const file of process.argv.slice(2)) {
  const { document, diagnostics } = await parser.parse(await readFile(file, "utf8"), { source: file });
  const items = diagnostics.map((d) => ({
    severity: SEVERITY[d.severity] ?? String(d.severity),
    code: d.code,
    message: d.message,
    path: d.path.join("/"),
  }));
  const valid = document !== undefined && !items.some((d) => d.severity === "error");
  failed ||= !valid;
  console.log(JSON.stringify({ file, valid, diagnostics: items }));
}
process.exit(failed ? 1 : 0);
