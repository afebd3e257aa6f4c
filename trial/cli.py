"""The `trial` command: `trial run`, `trial manifest`, `trial report`, `trial import-nni`,
`trial check-solver`, `trial predict`, `trial ui`.

`python trial/run.py ARGS` is the same as `trial run ARGS`. A mistake in the user's
input (a `UserError`) is one line on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import atexit
import logging
import os
import shlex
import sys
import warnings
from pathlib import Path
from typing import Sequence

from trial.errors import SweepFailed, SweepInterrupted, UserError

EXIT_USER_ERROR = 2
EXIT_SWEEP_FAILED = 1
EXIT_INTERRUPTED = 130  # what a shell reports for a process ended by Ctrl-C


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="sweep config YAML (default: search_spaces/demo.yaml)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a config value; VALUE parses as YAML, e.g. --set solver.params.epochs=3 "
        "or --set 'search.space.lr={type: loguniform, low: 1.0e-4, high: 1.0e-2}' (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trial", description="Hyperparameter sweeps of PyTorch solvers on Ray Tune + Optuna, tracked in MLflow.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a sweep", description="Run a sweep: a pre-flight check of the solver on the real data (before Ray starts), then "
        "Ray Tune + Optuna over search.space, one MLflow child run per trial.")
    _config_args(run)
    run.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join (default: $RAY_ADDRESS, else start a local Ray on 127.0.0.1)",
    )
    run.add_argument(
        "--debug",
        action="store_true",
        help="check the set-up: every row and file checked as the full run checks them, then a stratified 5%% of "
        "the data trained for 2 epochs in 2 trials (batch size lowered to what it holds); the sweep is named "
        "<name>-debug, its runs tagged debug",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the sweep this config names (its `name`; give the same --config and --set values) after "
        "Ctrl-C or a killed driver: finished trials stay, unfinished ones restart from their last checkpoint, "
        "Optuna keeps its history, MLflow's parent and child runs are written on",
    )
    verbosity = run.add_mutually_exclusive_group()
    verbosity.add_argument("--quiet", action="store_true", help="no progress, only warnings, errors and the summary")
    verbosity.add_argument(
        "--verbose", action="store_true",
        help="Tune's progress tables and Ray's INFO logs besides a line per ended trial (by default: the sweep's own "
        "progress, a live bar on a terminal, a line per ended trial otherwise)",
    )
    run.set_defaults(handler=_run)

    manifest = commands.add_parser(
        "manifest",
        help="build or reuse the split manifest and show how the splits hold",
        description="Build (or reuse, by content hash) the sweep's split manifest; print its path, "
        "per-split counts and shares of each stratify column and their combinations, and group leakage.",
    )
    _config_args(manifest)
    manifest.set_defaults(handler=_manifest)

    report = commands.add_parser(
        "report",
        help="rebuild a sweep's HTML report from the MLflow store",
        description="Rebuild the HTML report of a sweep (an experiment's newest sweep, debug sweeps skipped, "
        "or a parent run id) from the MLflow store, log it on the parent run as report.html, and print "
        "which parent run it was built from, then its path (the last line).",
    )
    report.add_argument("target", metavar="EXPERIMENT_OR_RUN_ID")
    report.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory)",
    )
    report.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for report.html (default: the logged artifact itself where the store keeps artifacts "
        "as local files, as a sqlite store does; else ./report-<run id>.html)",
    )
    report.add_argument(
        "--debug",
        action="store_true",
        help="report the experiment's newest debug sweep (tag debug=true) instead",
    )
    report.set_defaults(handler=_report)

    nni = commands.add_parser(
        "import-nni",
        help="convert an NNI experiment (config.yml, search_space.json) into a sweep config",
        description="Convert an NNI experiment into a search_spaces/ YAML: its config.yml alone (NNI v1 or v2; the "
        "space is its searchSpaceFile / searchSpacePath or inline searchSpace), its search_space.json alone, or "
        "both. trialConcurrency, maxTrialNumber and the tuner or advisor carry over, what has no counterpart is "
        "named in a warning. Search space types keep the values NNI draws; normal and qnormal become "
        "bounded ranges with a warning; the rest (lognormal, nested choices, a custom tuner's format) are errors "
        "naming the key.",
    )
    nni.add_argument("nni_file", type=Path, metavar="NNI_FILE", help="NNI's config.yml, or its search_space.json")
    nni.add_argument(
        "experiment", type=Path, nargs="?", default=None, metavar="CONFIG_YML", help="after a search_space.json: the config.yml"
    )
    nni.add_argument("-o", "--out", type=Path, default=None, help="where to write (default: search_spaces/<first file's folder name>.yaml)")
    nni.add_argument("--solver", default="ecg_cnn1d", help="solver whose params the space searches (default: ecg_cnn1d)")
    nni.add_argument("--dataset", default="demo_ecg", help="built-in dataset to start from; edit data: for your own (default: demo_ecg)")
    nni.add_argument("--metric", default="valid/auroc", help="the metric NNI's trials reported (default: valid/auroc)")
    nni.set_defaults(handler=_import_nni)

    check = commands.add_parser(
        "check-solver",
        help="run the solver contract's checks on a solver, yours or a built-in",
        description="Run, on a solver class, the checks every built-in solver passes: its Params have defaults, "
        "validate and are frozen; for each data kind it claims (data_kinds), build_model maps a batch to finite "
        "logits, one epoch of trial's loop trains it, its weights survive a checkpoint round trip, and the same "
        "seed gives the same weights. One line per check; exit 1 when any fails.",
    )
    check.add_argument("solver", metavar="SOLVER", help="a built-in name, module.path:ClassName or path/to/file.py:ClassName")
    check.set_defaults(handler=_check_solver)

    predict = commands.add_parser(
        "predict",
        help="score a labels CSV with a sweep's model; per-hospital metrics where it is labelled",
        description="Score every row of a labels CSV with a sweep's model: its data files are found, checked and read "
        "as a sweep reads them. Writes the rows with a probability per class and the predicted class. Where the CSV "
        "has the target column it also prints the metrics overall and per value of each --by column (default: the "
        "sweep's stratify columns, e.g. per hospital) and logs them on a new MLflow run (role prediction) in the "
        "sweep's experiment: external validation. The output's path is the last line.",
    )
    predict.add_argument(
        "model",
        metavar="MODEL",
        help="a sweep's parent run id, runs:/ID/model, models:/NAME/VERSION or models:/NAME@alias",
    )
    predict.add_argument("--labels", type=Path, required=True, metavar="CSV", help="the rows to score; the target column may be absent")
    predict.add_argument(
        "-o", "--out", type=Path, default=None, help="output CSV (default: ./<CSV name>-predictions.csv)"
    )
    predict.add_argument(
        "--tta",
        type=_count(0),
        default=0,
        metavar="N",
        help="average each row's probabilities over N passes through the solver's own augmentations, seeded "
        "(default: 0, one plain pass)",
    )
    predict.add_argument("--batch-size", type=_count(1), default=256, metavar="B", help="rows per forward pass (default: 256)")
    predict.add_argument(
        "--by", action="append", default=None, metavar="COLUMN", help="break the metrics down by this column (repeatable)"
    )
    predict.add_argument("--seed", type=int, default=0, help="seed of the --tta augmentations (default: 0)")
    predict.add_argument(
        "--allow-outside-root", action="store_true", help="allow data paths that escape the CSV's folder"
    )
    predict.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store holding the model (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory)",
    )
    predict.set_defaults(handler=_predict)

    ui = commands.add_parser(
        "ui",
        help="open the MLflow UI over the sweeps' store (mlflow server on 127.0.0.1)",
        description="Start MLflow's server and UI over the MLflow store (its runs' artifacts browsable), print "
        "its URL and run until Ctrl-C. It binds 127.0.0.1: only this machine can reach it.",
    )
    ui.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory)",
    )
    ui.add_argument("--port", type=int, default=5000, help="port to listen on; 0 picks a free one (default: 5000)")
    ui.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: 127.0.0.1); any other opens the UI, which has no login, to the network",
    )
    ui.set_defaults(handler=_ui)
    return parser


def _run(args: argparse.Namespace) -> int:
    from trial.config import load_config

    overrides = [*args.overrides, "debug=true"] if args.debug else args.overrides
    config = load_config(args.config, overrides)
    from trial.summary import print_summary
    from trial.sweep import run_sweep

    verbose = 0 if args.quiet else 2 if args.verbose else 1
    outcome = run_sweep(
        config, address=args.address, verbose=verbose, resume=args.resume, resume_command=_resume_command(args.argv)
    )
    print_summary(config, outcome)
    return 0


def _resume_command(run_argv: Sequence[str]) -> str:
    """This command line again with --resume, as the user started it, to paste back."""
    heads = {"run.py": [sys.executable, sys.argv[0]], "cli.py": [sys.executable, "-m", "trial.cli", "run"]}
    head = heads.get(Path(sys.argv[0]).name, ["trial", "run"])
    return shlex.join([*head, *(arg for arg in run_argv if arg != "--resume"), "--resume"])


def _manifest(args: argparse.Namespace) -> int:
    from trial.config import load_config
    from trial.data import apply_filter, prepare_data, read_labels
    from trial.manifest import describe_filter, describe_manifest

    config = load_config(args.config, args.overrides)
    data = config.data
    prepared = prepare_data(config)
    print(prepared.manifest_csv)
    if data.filter is not None:
        # The labels again, as prepare_data read them: it keeps only what the filter kept.
        labels = read_labels(data)[1]
        kept = apply_filter(labels, data.filter, target=data.target, classes=data.classes)
        print(describe_filter(labels, kept, query=data.filter, columns=[data.target, *data.stratify]))
    print(describe_manifest(prepared.frame(), stratify=data.stratify, group=data.group))
    return 0


def _report(args: argparse.Namespace) -> int:
    from trial.runs import default_tracking_uri
    from trial.report import describe_parent, report_command

    parent, path = report_command(args.target, args.tracking_uri or default_tracking_uri(), args.out, debug=args.debug)
    print(describe_parent(parent))
    print(path)  # last: scripts read it
    return 0


def _import_nni(args: argparse.Namespace) -> int:
    from trial.nni import import_nni

    paths = [args.nni_file] + ([args.experiment] if args.experiment else [])
    out = args.out or Path("search_spaces") / f"{args.nni_file.resolve().parent.name}.yaml"
    print(import_nni(paths, out, solver=args.solver, dataset=args.dataset, metric=args.metric))
    return 0


def _check_solver(args: argparse.Namespace) -> int:
    from trial.solver_checks import check_solver

    results = check_solver(args.solver)  # a solver that does not load is a UserError: exit 2
    for name, failure in results:
        print(f"FAIL {name}: {failure}" if failure else f"ok   {name}")
    failed = sum(failure is not None for _, failure in results)
    print(f"{args.solver}: {len(results) - failed} of {len(results)} checks passed")
    return EXIT_SWEEP_FAILED if failed else 0


def _predict(args: argparse.Namespace) -> int:
    from trial.predict import describe_metrics, predict_csv
    from trial.runs import default_tracking_uri

    prediction = predict_csv(
        args.model,
        args.labels,
        tracking_uri=args.tracking_uri or default_tracking_uri(),
        out=args.out,
        tta=args.tta,
        batch_size=args.batch_size,
        by=args.by,
        allow_outside_root=args.allow_outside_root,
        seed=args.seed,
    )
    print(f"scored {prediction.rows} rows")
    if prediction.metrics is not None:
        print(describe_metrics(prediction.metrics))
        print(f"logged on MLflow run {prediction.run_id}")
    print(prediction.output)  # last: scripts read it
    return 0


def _count(least: int):  # noqa: ANN202 - an argparse type
    """An argparse type: an integer >= least."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"expected an integer >= {least}, got {value}")
        return value

    return parse


def _ui(args: argparse.Namespace) -> int:
    from trial.runs import default_tracking_uri
    from trial.ui import ServerError, serve

    try:
        return serve(args.tracking_uri or default_tracking_uri(), host=args.host, port=args.port)
    except ServerError as error:  # mlflow server's own output, above, says why
        print(f"trial: error: {error}", file=sys.stderr)
        return 1


def _one_line_warnings() -> None:
    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001 - warnings' signature
        print(f"trial: warning: {message}", file=sys.stderr)

    warnings.showwarning = show


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv[1:]  # after the command name: what `trial run` was given
    _one_line_warnings()
    # MLflow logs its store set-up ("Creating initial MLflow database tables") at INFO, and
    # sets its logger's level when first imported: import it first, then quiet it.
    import mlflow  # noqa: F401

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    # Its progress bars for artifact transfers (logging and loading a model) would each
    # be a screenful of carriage-return lines in a log.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        return args.handler(args)
    except UserError as error:
        print(f"trial: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except SweepFailed as error:
        print(f"trial: error: {error}", file=sys.stderr)
        return EXIT_SWEEP_FAILED
    except (SweepInterrupted, KeyboardInterrupt) as error:
        print(f"trial: {error or 'interrupted'}", file=sys.stderr)
        return EXIT_INTERRUPTED


def entry_point() -> None:
    """The `trial` command (and trial/run.py): main(), then out without the interpreter's
    native teardown."""
    exit_now(main())


def exit_now(code: int) -> None:
    """Exit with `code` once Python's exit handlers ran (Ray's shutdown, logging's flush):
    the native teardown after them (torch, Ray's core worker, gRPC) took 2 s per sweep here
    and has nothing left to write. Only on a normal return: an error still unwinds."""
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry_point()
