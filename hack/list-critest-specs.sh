#!/usr/bin/env bash
# Regenerate hack/critest-specs.txt: every spec of the installed critest, full
# text as `critest -ginkgo.v` prints it ("[k8s.io] Describe Context It [Conformance]",
# plus " [Serial]" for serial specs), sorted, one a line.
# A dry run needs no runtime: critest only dials the endpoint inside specs.
# Benchmark specs are included (critest skips them unless -benchmark); specs
# registered only on SELinux hosts are not.
#   hack/list-critest-specs.sh [output]   (default: hack/critest-specs.txt)
set -euo pipefail

HACK=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${1:-$HACK/critest-specs.txt}
CRITEST=${CRITEST:-critest}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The JSON report lists skipped specs too, with their container texts; run
# from $tmp so no stray crictl.yaml in the working directory is picked up.
(cd "$tmp" && "$CRITEST" -ginkgo.dry-run -ginkgo.no-color -ginkgo.json-report="$tmp/specs.json" \
	-runtime-endpoint "unix://$tmp/none.sock" >"$tmp/log" 2>&1) || {
	cat "$tmp/log" >&2
	exit 1
}
python3 - "$tmp/specs.json" >"$OUT.tmp" <<'EOF'
import json, sys
names = set()
for suite in json.load(open(sys.argv[1])):
    for spec in suite["SpecReports"]:
        if spec["LeafNodeType"] != "It":
            continue
        name = " ".join(spec["ContainerHierarchyTexts"] + [spec["LeafNodeText"]])
        # ginkgo -v appends the flattened labels, e.g. " [Serial]" from the
        # Serial decorator (a label, so not matched by -ginkgo.focus/skip).
        labels = []
        for group in (spec.get("ContainerHierarchyLabels") or []) + [spec.get("LeafNodeLabels") or []]:
            labels += [l for l in group or [] if l not in labels]
        names.add(name + (" [%s]" % ", ".join(labels) if labels else ""))
print("\n".join(sorted(names)))
EOF
mv "$OUT.tmp" "$OUT"
echo "$(wc -l <"$OUT") specs of $("$CRITEST" -version 2>/dev/null | grep -o 'v[0-9][0-9.]*' | sed -n 1p) -> $OUT"
