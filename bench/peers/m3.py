"""M3, the realistic model of the peer benchmark: what data scientists mostly deploy.

A `plan` string column and three numbers → ColumnTransformer(OneHotEncoder on plan,
StandardScaler on the numbers) → HistGradientBoostingClassifier(max_iter=100), fitted on
generated data (a fixed seed, nothing downloaded), so every run and every venv trains the same
trees. Requests send DataFrame records: [{"plan": "pro", "a": 1.0, "b": 2.0, "c": 3.0}, ...].
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

PLANS = ("free", "basic", "pro", "enterprise")
NUMBERS = ("a", "b", "c")
COLUMNS = ("plan", *NUMBERS)
TRAIN_ROWS = 5000  # under HistGradientBoosting's 10,000-row early-stopping threshold: 100 iterations


def frame(rows: int, seed: int) -> pd.DataFrame:
    """`rows` records: plans with uneven shares, numbers on different scales (so the scaler matters)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "plan": rng.choice(PLANS, size=rows, p=(0.4, 0.3, 0.2, 0.1)),
        "a": rng.normal(0.0, 1.0, rows),
        "b": rng.exponential(50.0, rows),
        "c": rng.uniform(-10.0, 10.0, rows),
    })


def labels(data: pd.DataFrame, seed: int) -> np.ndarray:
    """A noisy rule of all four columns, so every step carries signal; both classes common."""
    rng = np.random.default_rng(seed + 1)
    plan_effect = data["plan"].map({"free": -1.0, "basic": 0.0, "pro": 0.8, "enterprise": 1.5}).to_numpy()
    score = plan_effect + 0.9 * data["a"] + 0.02 * (data["b"] - 50.0) + 0.15 * np.sin(data["c"]) * data["c"]
    return (score + rng.normal(0.0, 1.0, len(data)) > 0).astype(int)


def train(seed: int = 0) -> Pipeline:
    data = frame(TRAIN_ROWS, seed)
    model = Pipeline([
        ("columns", ColumnTransformer([
            ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
            ("numbers", StandardScaler(), list(NUMBERS)),
        ])),
        ("boost", HistGradientBoostingClassifier(max_iter=100, random_state=0)),
    ])
    return model.fit(data, labels(data, seed))


def request_records(rows: int, seed: int = 1) -> list[dict]:
    """Request rows as DataFrame records, in plain Python types (what JSON carries)."""
    data = frame(rows, seed)
    return [{"plan": str(plan), "a": float(a), "b": float(b), "c": float(c)}
            for plan, a, b, c in data.itertuples(index=False)]
