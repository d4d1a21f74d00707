"""Container images with make: built for Cloud Run's platform, tagged with the commit, pushed to
Artifact Registry, and run locally with settings but never secrets baked in; by docker, or by
podman with CONTAINER_ENGINE=podman. (tests/image/test_image.py builds and runs it for real.)"""
from __future__ import annotations

import os

from makefile_helpers import GCP, MAKEFILE, PROJECT, git_sha, image, make, ok  # noqa: F401


def test_images_are_tagged_with_the_commit_and_pushed_to_artifact_registry(make):
    sha = git_sha()
    build = ok(make("build-image"))
    assert build.argvs("docker") == [["build", "--platform=linux/amd64", f"--tag=mlapi:{sha}", "."]]

    assert ok(make("conf-docker-for-gcp")).argvs() == [["auth", "configure-docker",
                                                        "europe-west1-docker.pkg.dev"]]
    push = ok(make("image-to-gcp", **GCP))
    assert push.argvs("docker") == [["tag", f"mlapi:{sha}", image(sha)], ["push", image(sha)]]
    assert "gcr.io" not in MAKEFILE.read_text()  # Container Registry is shut down

    other = ok(make("image-to-gcp", IMAGE_TAG="v1.2.0", DOCKER_PROJECT="fraud", ARTIFACT_REPOSITORY="ml",
                    GCP_REGION="us-central1", **GCP))
    assert other.argvs("docker")[-1] == ["push", f"us-central1-docker.pkg.dev/{PROJECT}/ml/fraud:v1.2.0"]


def test_run_container_passes_settings_not_secrets(make, tmp_path):
    # PORT is the one port variable: make run serves on it, run-container publishes the container's 8080 on it
    sha = git_sha()
    plain = ok(make("run-container"))
    assert plain.argvs("docker") == [["run", "--rm", "--publish=8080:8080", "--env=PORT=8080", f"mlapi:{sha}"]]

    key = tmp_path / "key.json"
    key.write_text("{}")
    run = ok(make("run-container", PORT="9000", MODELS="iris=models/iris.joblib,tickets=models/tickets.joblib",
                  LOG_LEVEL="DEBUG", MODEL_CACHE_DIR="/somewhere/local", GOOGLE_APPLICATION_CREDENTIALS=key))
    [argv] = run.argvs("docker")
    uid_gid = f"{os.getuid()}:{os.getgid()}"
    assert argv == ["run", "--rm", "--publish=9000:8080", "--env=PORT=8080",
                    "--env=MODELS=iris=models/iris.joblib,tickets=models/tickets.joblib", "--env=LOG_LEVEL=DEBUG",
                    f"--user={uid_gid}", f"--volume={key}:/run/secrets/gcp-key.json:ro",
                    "--env=GOOGLE_APPLICATION_CREDENTIALS=/run/secrets/gcp-key.json", f"mlapi:{sha}"]
    assert not any(arg.startswith("--env-file") for arg in argv)


def test_podman_builds_and_runs_the_image_with_the_same_commands(make):
    sha = git_sha()
    docker = ok(make("build-image", "run-container"))
    podman = ok(make("build-image", "run-container", CONTAINER_ENGINE="podman"))
    assert podman.argvs("docker") == [] and docker.argvs("podman") == []
    assert podman.argvs("podman") == docker.argvs("docker") == [
        ["build", "--platform=linux/amd64", f"--tag=mlapi:{sha}", "."],
        ["run", "--rm", "--publish=8080:8080", "--env=PORT=8080", f"mlapi:{sha}"]]


def test_pip_index_settings_reach_the_build_by_name_only(make):
    # A mirror's URL may hold a token: the engine reads the value from the environment, so it is
    # neither in the command line (ps, CI logs) nor, declared in the builder stage only, in the image.
    index = "https://user:token@mirror.example/simple"
    build = ok(make("build-image", env={"PIP_INDEX_URL": index, "PIP_TRUSTED_HOST": "mirror.example"}))
    [argv] = build.argvs("docker")
    assert argv == ["build", "--platform=linux/amd64", "--build-arg=PIP_INDEX_URL", "--build-arg=PIP_TRUSTED_HOST",
                    f"--tag=mlapi:{git_sha()}", "."]
    assert index not in " ".join(argv)
