"""Where an M3 request's time goes, in process: mlapi's WSGI app and the minimal handler's
steps, on requests of 1 and 100 rows (--rows), each step timed alone on the same input (median
of 5 runs), or counted in instructions under callgrind (--instructions CALLS).

    .venv/bin/python bench/peers/m3_breakdown.py [WORKDIR]      # from the repository root
    .venv/bin/python bench/peers/m3_breakdown.py --instructions 10 --rows 1,16,64,100,256

WORKDIR holds models/m3.joblib (bench/peers/prepare.py writes it; default /tmp/anchors-work);
absent, it is trained here (bench/peers/m3.py). The requests are m3.request_records(rows), the
benchmark's own bodies for 1 and 100 rows. One native thread per process, as both servers run
(OMP_NUM_THREADS=1 before numpy loads). Prints a table; --json prints the numbers.
"""
from __future__ import annotations

import os

for _cap in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_cap, "1")  # before numpy / scikit-learn start their thread pools

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # m3, flask_app, callgrind_marks, timing
from timing import per_call_us  # noqa: E402


def ensure_model(work: str) -> str:
    """The benchmark's M3 file, trained here when the work directory has none."""
    model_path = f"{work}/models/m3.joblib"
    if not os.path.exists(model_path):
        import joblib
        import m3

        os.makedirs(f"{work}/models", exist_ok=True)
        joblib.dump(m3.train(), model_path)
    return model_path


def request_body(rows: int) -> bytes:
    """The benchmark's request of `rows` records (prepare.py's bodies for 1 and 100 rows)."""
    import m3

    return json.dumps({"instances": m3.request_records(rows)}).encode()


def wsgi_caller(application, body: bytes):
    """One POST /predict through a WSGI app, as a server would call it; returns the body."""
    statuses = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    def call():
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/predict", "CONTENT_TYPE": "application/json",
                   "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), "SERVER_NAME": "localhost",
                   "SERVER_PORT": "80", "wsgi.url_scheme": "http", "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1",
                   "wsgi.errors": sys.stderr}
        out = b"".join(application(environ, start_response))
        assert statuses[-1].startswith("200"), (statuses[-1], out[:300])
        return out
    return call


def steps(model_path: str, body: bytes) -> dict:
    """{step: a callable doing it once}, every step on the same request's data."""
    import numpy as np
    import orjson
    import pandas as pd

    from mlapi.serving.instances import to_model_input

    served = application_model(model_path)
    from mlapi.wsgi import application
    os.environ["MODEL_PATH"] = model_path
    import flask_app  # the minimal handler, MODEL_PATH read at import

    model = flask_app.model
    columns, booster = model[0], model[-1]  # the ColumnTransformer, the HistGradientBoostingClassifier
    instances = json.loads(body)["instances"]
    minimal_frame = pd.DataFrame(instances)
    mlapi_frame = to_model_input(served, instances)
    served_features = served.features(mlapi_frame)
    features = columns.transform(mlapi_frame)
    proba = booster.predict_proba(features)
    labels = booster.predict(features)
    expected = model.predict_proba(pd.DataFrame(instances))
    assert np.array_equal(proba, expected) and np.array_equal(labels, model.predict(minimal_frame))
    encoder, scaler = columns.named_transformers_["plan"], columns.named_transformers_["numbers"]
    plan, numbers = mlapi_frame[["plan"]], mlapi_frame[["a", "b", "c"]]
    mlapi_call = wsgi_caller(application, body)
    minimal_call = wsgi_caller(flask_app.app, body)
    served_answer = json.loads(mlapi_call())  # whatever path mlapi takes, the model's own answer
    assert served_answer["predictions"] == labels.tolist(), "mlapi's labels differ from the model's"
    assert np.abs(np.asarray(served_answer["probabilities"]) - proba).max() <= 1e-9, "mlapi's probabilities differ"
    answer = {"predictions": labels.tolist(), "probabilities": proba.tolist(), "classes": [0, 1]}
    return {
        "mlapi: whole request (WSGI app, in process)": mlapi_call,
        "mlapi: JSON parse (orjson.loads)": lambda: orjson.loads(body),
        "mlapi: records -> DataFrame (to_model_input)": lambda: to_model_input(served, instances),
        "mlapi: ServedModel.predict (transform + predict_proba + labels + checks)":
            lambda: served.predict(mlapi_frame),
        "  ServedModel.features (the feature steps: compiled, or scikit-learn's)": lambda: served.features(mlapi_frame),
        "  ServedModel.predict_features (the booster: shortcut, or scikit-learn's)":
            lambda: served.predict_features(served_features),
        "mlapi: response JSON (orjson.dumps)": lambda: orjson.dumps(answer),
        "minimal: whole request (Flask WSGI app, in process)": minimal_call,
        "minimal: JSON parse (json.loads)": lambda: json.loads(body),
        "minimal: records -> DataFrame (pd.DataFrame(instances))": lambda: pd.DataFrame(instances),
        "minimal: model.predict(frame) (Pipeline)": lambda: model.predict(minimal_frame),
        "ColumnTransformer.transform(mlapi's frame)": lambda: columns.transform(mlapi_frame),
        "ColumnTransformer.transform(pd.DataFrame(records))": lambda: columns.transform(minimal_frame),
        "  OneHotEncoder.transform(frame[['plan']])": lambda: encoder.transform(plan),
        "  StandardScaler.transform(frame[['a','b','c']])": lambda: scaler.transform(numbers),
        "  frame[['plan']] + frame[['a','b','c']] (column selection)":
            lambda: (mlapi_frame[["plan"]], mlapi_frame[["a", "b", "c"]]),
        "HGB.predict_proba(features)": lambda: booster.predict_proba(features),
        "HGB.predict(features)": lambda: booster.predict(features),
        "HGB._raw_predict(features) (the trees; validation skipped)": lambda: booster._raw_predict(features),
    }


def application_model(model_path: str):
    """The ServedModel mlapi's app loaded (the registry's default), for the steps timed alone."""
    os.environ["MODELS"] = f"m3={model_path}"
    from mlapi.wsgi import application  # builds the app from MODELS (once per process)

    return application.extensions["mlapi.services"].registry.get(None, None)


def count_instructions(work: str, calls: int, sizes: list[int]) -> dict[int, dict[str, float]]:
    """Instructions per call of every step: this script again under callgrind (--count), each
    step's `calls` calls between a zero and a named dump (bench/peers/callgrind_marks.py)."""
    from callgrind_marks import read_dumps

    out = tempfile.mkdtemp(prefix="m3-callgrind-")
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg", "--dump-line=no",
                    sys.executable, os.path.abspath(__file__), "--count", str(calls),
                    "--rows", ",".join(map(str, sizes)), work],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    counts = read_dumps(f"{out}/cg")
    shutil.rmtree(out)
    return {rows: {step.split("|", 1)[1]: total / calls for step, total in counts.items()
                   if step.startswith(f"{rows}|")} for rows in sizes}


def run_counted(work: str, calls: int, sizes: list[int]) -> None:
    """Under callgrind: every step warmed, then `calls` calls between a zero and a dump."""
    from callgrind_marks import Marks

    marks = Marks()
    model_path = ensure_model(work)
    for rows in sizes:
        for step, call in steps(model_path, request_body(rows)).items():
            call()
            marks.zero()
            for _ in range(calls):
                call()
            marks.dump(f"{rows}|{step}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", nargs="?", default=os.environ.get("ANCHORS_WORK", "/tmp/anchors-work"))
    parser.add_argument("--instructions", type=int, metavar="CALLS", default=0,
                        help="count instructions per call under callgrind (CALLS calls a step) instead of timing")
    parser.add_argument("--rows", default="1,100", help="request sizes, comma-separated (default 1,100)")
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)  # the run under callgrind
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args()
    sizes = [int(rows) for rows in args.rows.split(",")]
    if args.count:
        run_counted(args.work, args.count, sizes)
        return 0
    model_path = ensure_model(args.work)
    if args.instructions:
        results, unit = count_instructions(args.work, args.instructions, sizes), "instructions per call (callgrind)"
    else:
        results = {rows: {step: per_call_us(call, budget=0.25, repeats=5)
                          for step, call in steps(model_path, request_body(rows)).items()}
                   for rows in sizes}
        unit = "µs per call (median of 5)"
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print(f"mlapi's compute path for M3: {application_model(model_path).compute_path}")
    print(f"{unit + ', one native thread':72}" + "".join(f" {f'{rows} rows':>11}" for rows in sizes))
    for step in results[sizes[0]]:
        print(f"{step:72}" + "".join(f" {results[rows].get(step, 0):11,.0f}" for rows in sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
