"""The demo models, trained deterministically from data that ships with scikit-learn or is
generated here — nothing is downloaded.

- iris:    tabular classifier, Pipeline(StandardScaler, LogisticRegression) on sklearn's bundled
           iris data, fitted on a DataFrame so it knows its feature names.
- tickets: text classifier routing support tickets to billing / account access / website /
           mobile app, Pipeline(TfidfVectorizer, LogisticRegression). Its corpus is SYNTHETIC:
           sentences assembled from templates below, not real customer data.
"""
from __future__ import annotations

import random
from pathlib import Path

import joblib

TICKET_TOPICS = {
    "billing": (
        ["I was charged twice for {thing}", "my invoice for {thing} is wrong", "please refund {thing}",
         "why did my card get billed for {thing}", "cancel the subscription and stop charging me for {thing}",
         "the price of {thing} on my receipt is higher than advertised"],
        ["my monthly plan", "the annual subscription", "last month", "the premium upgrade", "an order I cancelled"],
    ),
    "account access": (
        ["I cannot log in to {thing}", "password reset email never arrives for {thing}",
         "my account {thing} is locked", "two-factor code is not accepted for {thing}",
         "how do I change the email address of {thing}", "someone else signed in to {thing}"],
        ["my account", "the admin account", "my profile", "the team workspace", "my user login"],
    ),
    "website": (
        ["the {thing} page does not load", "{thing} shows a 404 error", "the checkout button on {thing} does nothing",
         "images on {thing} are broken", "{thing} is very slow in my browser", "links on {thing} point nowhere"],
        ["home page", "pricing page", "help center", "web dashboard", "site search"],
    ),
    "mobile app": (
        ["the app crashes when I open {thing}", "{thing} in the iphone app is blank",
         "android app will not sync {thing}", "push notifications for {thing} stopped",
         "after the app update {thing} is gone", "the mobile app freezes on {thing}"],
        ["the camera screen", "my settings", "the offline mode", "the widget", "the login screen"],
    ),
}


def ticket_corpus(seed: int = 7, per_label: int = 60) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for label, (templates, things) in TICKET_TOPICS.items():
        for _ in range(per_label):
            texts.append(rng.choice(templates).format(thing=rng.choice(things)))
            labels.append(label)
    return texts, labels


def train_iris():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_iris(as_frame=True)
    frame = data.frame.drop(columns="target")
    frame.columns = [c.replace(" (cm)", "").replace(" ", "_") for c in frame.columns]
    labels = data.target.map(dict(enumerate(data.target_names)))
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(frame, labels)


def train_tickets():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts, labels = ticket_corpus()
    return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                         LogisticRegression(max_iter=1000, C=10.0)).fit(texts, labels)


DEMO_MODELS = {"iris": train_iris, "tickets": train_tickets}


def write_demo_models(directory: str | Path = "models", force: bool = False) -> list[Path]:
    """Train and save each demo model unless it already exists; latest.joblib is iris."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, train in DEMO_MODELS.items():
        path = directory / f"{name}.joblib"
        if force or not path.exists():
            joblib.dump(train(), path)
            written.append(path)
    latest = directory / "latest.joblib"
    if force or not latest.exists():
        latest.write_bytes((directory / "iris.joblib").read_bytes())
        written.append(latest)
    return written
