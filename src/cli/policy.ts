// `failclosed policy digest|show`: a policy's identity is the digest of its canonical document.
import { basename, extname } from "node:path";
import { Command } from "commander";
import { DEFAULT_POLICY } from "../policy/default-policy.ts";
import { POLICY_DOCUMENT_KIND, isPolicyDocument, policyDigest, type PolicyDocument } from "../policy/policy-document.ts";
import { CliError, jsonText, readJsonFile, readTextFile, type CliIo } from "./io.ts";

/**
 * A policy document JSON file, or (for a `.cedar` file) Cedar text wrapped as a document with
 * the given id (default: the file name) and version (default "1").
 */
export function readPolicyFile(path: string, wrap: { id?: string; version?: string } = {}): PolicyDocument {
  if (extname(path) === ".cedar") {
    return { kind: POLICY_DOCUMENT_KIND, id: wrap.id ?? basename(path, ".cedar"), version: wrap.version ?? "1", cedar: readTextFile(path, "Cedar policy") };
  }
  const v = readJsonFile(path, "policy document");
  if (!isPolicyDocument(v)) throw new CliError("INVALID_INPUT", `${path}: not a ${POLICY_DOCUMENT_KIND} document {kind, id, version, cedar}`);
  return v;
}

function describe(doc: PolicyDocument, json: boolean, withText: boolean): string {
  const digest = policyDigest(doc);
  if (json) return jsonText(withText ? { digest, document: doc } : { digest, id: doc.id, version: doc.version });
  return `${digest}\n${withText ? `# ${doc.id} version ${doc.version}\n${doc.cedar}` : ""}`;
}

export function policyCommand(io: CliIo): Command {
  const policy = new Command("policy").description("policy documents and their digests");
  policy
    .command("digest")
    .description("print the digest (content address) of a policy document")
    .argument("<file>", "policy document JSON, or a .cedar file")
    .option("--id <id>", "id when wrapping a .cedar file")
    .option("--version <version>", "version when wrapping a .cedar file")
    .option("--json", "print the result as JSON")
    .action((file: string, o: { id?: string; version?: string; json?: boolean }) => {
      const doc = readPolicyFile(file, { ...(o.id !== undefined ? { id: o.id } : {}), ...(o.version !== undefined ? { version: o.version } : {}) });
      io.out(describe(doc, o.json === true, false));
    });
  policy
    .command("show")
    .description("print the built-in default policy with its digest")
    .option("--json", "print the document and digest as JSON")
    .action((o: { json?: boolean }) => io.out(describe(DEFAULT_POLICY, o.json === true, true)));
  return policy;
}
