#!/usr/bin/env bash
# Mutation testing of the core modules with mutmut 3, against the unit tests only (no Ray).
# Not part of CI: a full run takes hours on the 2-core machine. Usage:
#
#   bash scripts/mutation.sh                          # every target below
#   bash scripts/mutation.sh metrics sampler          # some of them
#   bash scripts/mutation.sh --survivors [target...]  # retest only the mutants not killed last time
#   bash scripts/mutation.sh --score [target...]      # only print the scores of the last runs
#
# Settings are in setup.cfg's [mutmut] section; mutants, stats and results live in
# ./mutants/ (ignored by git). A run retests every mutant of the targets it names and
# keeps the other targets' results, so --score reports them all. mutmut maps each test
# to the functions it calls once, and adds tests new since; delete mutants/ to redo the
# map after changing which functions existing tests call.
# MUTMUT_CHILDREN sets the parallel mutants (default 1: the machine is shared).
set -euo pipefail
set -f  # the mutant-name globs below are mutmut's to match, not the shell's
cd "$(dirname "$0")/.."
. .venv/bin/activate

# Target name -> mutant-name globs (mutmut names a mutant <module>.x_<function>__mutmut_<n>,
# or <module>.xǁ<Class>ǁ<method>__mutmut_<n>).
declare -A GLOBS=(
  [manifest]="trial.manifest.*"
  [sampler]="trial.sampler.*"
  [filecheck]="trial.filecheck.*"
  [config]="trial.config.*"
  [metrics]="trial.metrics.*"
  [seeding]="trial.seeding.*"
  [context]="trial.context.*"
  [nni]="trial.nni.* trial.nni_space.*"
  # trial/loop.py: early stopping apart from the rest of the loop (the epoch loop, the
  # Trainer, fine-tuning, evaluation).
  [early_stopping]="trial.loop.xǁEarlyStoppingǁ*"
  [loop]="trial.loop.x_* trial.loop.xǁTrainerǁ* trial.loop.xǁTrialJobǁ*"
  [solver]="trial.solver.*"
  [plugins]="trial.plugins.*"
)
ORDER=(manifest sampler filecheck config metrics seeding context nni early_stopping loop solver plugins)

mode=all
if [[ "${1:-}" == "--score" || "${1:-}" == "--survivors" ]]; then
  mode=${1#--}
  shift
fi
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=("${ORDER[@]}")
globs=()
for target in "${targets[@]}"; do
  if [[ -z "${GLOBS[$target]:-}" ]]; then
    echo "unknown target '$target'; known: ${ORDER[*]}" >&2
    exit 2
  fi
  globs+=(${GLOBS[$target]})
done

if ! python -c "import mutmut" 2>/dev/null; then
  pip install --quiet "mutmut>=3.8,<4"
fi

# Each mutant's last status. mutmut records a run's statuses in mutants/**/*.py.meta and
# marks every mutant it was not asked to run "not checked", so the results of earlier runs
# are merged into mutants/statuses.json: a mutant keeps its last checked status.
record_statuses() {
  python - <<'PY'
import json
from pathlib import Path

from mutmut.stats import status_by_exit_code

merged_file = Path("mutants/statuses.json")
# name -> [status, hash of the mutated function's source when that status was found]
earlier = json.loads(merged_file.read_text()) if merged_file.exists() else {}
merged = {}  # only mutants that exist now
for meta_file in Path("mutants").rglob("*.py.meta"):
    meta = json.loads(meta_file.read_text())
    for name, code in meta["exit_code_by_key"].items():
        function_hash = meta["hash_by_function_name"].get(name.rsplit(".", 1)[1].rsplit("__mutmut_", 1)[0])
        status = status_by_exit_code[code].replace(" ", "_")
        if status == "not_checked" and earlier.get(name, [None, None])[1] == function_hash:
            status = earlier[name][0]  # checked by an earlier run, and the function is unchanged since
        merged[name] = [status, function_hash]
merged_file.write_text(json.dumps(merged, indent=0, sort_keys=True))
PY
}
statuses() {
  python -c 'import json; [print(n, s) for n, (s, _) in json.load(open("mutants/statuses.json")).items()]'
}

if [[ $mode == survivors ]]; then
  record_statuses
  # Every mutant whose last result is not a kill: survivors, and mutants never checked.
  names=$(statuses | python -c '
import fnmatch, sys
globs = sys.argv[1:]
for line in sys.stdin:
    name, status = line.split()
    if status not in ("killed", "timeout") and any(fnmatch.fnmatchcase(name, g) for g in globs):
        print(name)' "${globs[@]}")
  globs=($names)
fi
if [[ $mode != score && ${#globs[@]} -gt 0 ]]; then
  # Each mutant runs its covering tests in a forked child; one torch thread keeps the
  # children from competing for the cores (the unit tests' conftest sets the same).
  OMP_NUM_THREADS=1 mutmut run --max-children "${MUTMUT_CHILDREN:-1}" "${globs[@]}" || true
fi
record_statuses

# killed / total per target; timeouts count as killed (the mutant hung the tests).
specs=()
for target in "${targets[@]}"; do
  specs+=("$target $(echo ${GLOBS[$target]})")
done
statuses | python -c '
import fnmatch, sys
from collections import Counter

status = dict(line.split() for line in sys.stdin)
row = "{:<16}{:>8}{:>7}{:>8}  {}"
print(row.format("target", "killed", "total", "score", "other"))
total = Counter()
for spec in sys.argv[1:]:
    target, *globs = spec.split()
    counts = Counter(s for n, s in status.items() if any(fnmatch.fnmatchcase(n, g) for g in globs))
    total.update(counts)
    killed, n = counts["killed"] + counts["timeout"], sum(counts.values())
    other = ", ".join(f"{k.replace(chr(95), chr(32))} {v}" for k, v in sorted(counts.items()) if k not in ("killed", "timeout"))
    print(row.format(target, killed, n, f"{killed / max(n, 1):.1%}", other))
killed, n = total["killed"] + total["timeout"], sum(total.values())
print(row.format("all", killed, n, f"{killed / max(n, 1):.1%}", ""))' "${specs[@]}"
echo "survivors: mutmut results; one mutant's diff: mutmut show <name>"
