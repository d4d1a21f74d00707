"""The model a newcomer brings: a churn classifier fitted on a DataFrame with a string category,
Pipeline(ColumnTransformer(OneHotEncoder on `plan`, StandardScaler on the numbers),
LogisticRegression). Deterministic synthetic data, trained inside the tests."""
from __future__ import annotations

import numpy as np
import pandas as pd

PLANS = ["basic", "premium", "pro"]  # sorted: the order OneHotEncoder learns them in


def churn_frame(rows: int = 300, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    plan = rng.choice(PLANS, rows)
    tenure = rng.integers(1, 60, rows).astype(float)
    spend = rng.normal(50, 15, rows)
    churned = ((plan == "basic") & (tenure < 20)) | (spend > 70)
    frame = pd.DataFrame({"plan": plan, "tenure_months": tenure, "monthly_spend": spend})
    return frame, np.where(churned, "yes", "no")


def train_churn():
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame, labels = churn_frame()
    columns = ColumnTransformer([("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
                                 ("numbers", StandardScaler(), ["tenure_months", "monthly_spend"])])
    return Pipeline([("columns", columns), ("model", LogisticRegression(max_iter=500))]).fit(frame, labels)
