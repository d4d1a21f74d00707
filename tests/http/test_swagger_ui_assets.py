"""GET /docs serves Swagger UI from the installed package: the page and every file it loads come
from this server, nothing from a CDN, so the explorer works offline and in a private network."""
import re

from conftest import models_env

# src= / href= / url(...) in the page and its stylesheet
REFERENCE = re.compile(r"""(?:src|href)=["']([^"']+)["']|url\(\s*["']?([^"')]+)["']?\s*\)""")


def references(text: str) -> list[str]:
    return [a or b for a, b in REFERENCE.findall(text)]


def test_the_page_and_everything_it_loads_are_ours(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "http://" not in html and "https://" not in html
    loaded = references(html)
    assert {"docs/swagger-ui.css", "docs/swagger-ui-bundle.js", "docs/init.js"} <= set(loaded)
    types = {}
    for url in loaded:
        assert not re.match(r"^[a-z]+:|^//", url), f"{url} is not served by us"
        answer = client.get("/" + url)  # relative to /docs: the server's root
        assert answer.status_code == 200, url
        types[url] = answer.mimetype
        if url.endswith(".css"):
            for inner in references(answer.get_data(as_text=True)):
                assert inner.startswith("data:") or not re.match(r"^[a-z]+:|^//", inner), inner
    assert types["docs/swagger-ui.css"] == "text/css"
    assert types["docs/swagger-ui-bundle.js"] in ("text/javascript", "application/javascript")
    init = client.get("/docs/init.js").get_data(as_text=True)
    # the document is ours, and Swagger UI's online validator is off
    assert 'url: "openapi.json"' in init and "validatorUrl: null" in init
    assert "http://" not in init and "https://" not in init


def test_only_swagger_uis_own_files_are_served(client):
    assert "max-age=86400" in client.get("/docs/swagger-ui-bundle.js").headers["Cache-Control"]
    for path in ("/docs/../setup.py", "/docs/package.json", "/docs/index.html", "/docs/%2e%2e%2fsetup.py"):
        assert client.get(path).status_code == 404, path


def test_docs_off(make_app, trained):
    client = make_app(MODELS=models_env(trained, "cancer"), API_DOCS="off").test_client()
    assert client.get("/docs/swagger-ui.css").status_code == 404
