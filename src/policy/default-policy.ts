// The sample policy the example agents run under. Request shape (see ./cedar.ts):
// principal Agent::"<key id>", action Action::"<name>", resource Resource::"<path>", and a
// context carrying `args`, `environment`, `lineage` and `time`.
import type { PolicyDocument } from "./policy-document.ts";

const CEDAR = `// Looking and thinking are always allowed.
@id("read")
permit (principal, action == Action::"read", resource);

@id("plan-and-summarize")
permit (principal, action in [Action::"plan", Action::"summarize"], resource);

// Money moves only in bounded, positive amounts.
@id("transfer-within-limit")
permit (principal, action == Action::"transfer", resource)
when {
  context has args &&
  context.args has amount &&
  0 < context.args.amount &&
  context.args.amount <= 10000
};

// Anyone may deploy to staging; elsewhere only the release agents (placeholder key ids).
@id("deploy-to-staging")
permit (principal, action == Action::"deploy", resource)
when {
  context has environment &&
  context.environment has name &&
  context.environment.name == "staging"
};

@id("deploy-by-release-agent")
permit (principal, action == Action::"deploy", resource)
when { principal in [Agent::"release-agent-1", Agent::"release-agent-2"] };

// Delegation chains stay short. Written as "unless" so that a request that does not say how
// deep it is counts as too deep.
@id("lineage-depth-limit")
forbid (principal, action, resource)
unless {
  context has lineage &&
  context.lineage has depth &&
  context.lineage.depth <= 4
};
`;

export const DEFAULT_POLICY: PolicyDocument = Object.freeze({
  kind: "failclosed/policy/v1",
  id: "failclosed-default",
  version: "1",
  cedar: CEDAR,
});
