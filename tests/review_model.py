"""A model with a text column beside a number: TF-IDF (or another vectorizer) on `description`
and a scaler on `price` in a ColumnTransformer, fitted on a DataFrame. Deterministic synthetic
data, trained inside the tests."""
from __future__ import annotations

import numpy as np
import pandas as pd

WORDS = ["great", "bad", "slow", "fast", "refund", "love", "broken", "fine"]


def reviews(n: int = 200, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"description": [" ".join(rng.choice(WORDS, 4)) for _ in range(n)],
                          "price": rng.normal(50, 10, n).round(2)})
    liked = frame["description"].str.contains("great|love") | (frame["price"] < 40)
    return frame, np.where(liked, "liked", "not")


def text_column_pipeline(vectorizer: str = "tfidf"):
    """`vectorizer`: "tfidf", "count", or "hashing" (a Pipeline of HashingVectorizer and
    TfidfTransformer inside the ColumnTransformer)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import (CountVectorizer, HashingVectorizer, TfidfTransformer,
                                                 TfidfVectorizer)
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    reader = {"tfidf": TfidfVectorizer(), "count": CountVectorizer(),
              "hashing": make_pipeline(HashingVectorizer(n_features=64), TfidfTransformer())}[vectorizer]
    return make_pipeline(ColumnTransformer([("text", reader, "description"), ("numbers", StandardScaler(), ["price"])]),
                         LogisticRegression(max_iter=1000))
