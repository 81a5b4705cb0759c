"""The report: sections, escaping of user strings, figures, offline rendering in headless Chromium, no TensorFlow."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from keras_ablate.analysis import simulate
from keras_ablate.cli import main
from keras_ablate.report.render import build_report
from tests.conftest import TINY

EVIL = "<script>alert(1)</script>"
HEADINGS = (
    "Summary",
    "Best configurations",
    "Largest effects",
    "Factor effects",
    "Figures",
    "Runs",
    "Environment",
)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Hand-made run folders (no TensorFlow): a failed run with HTML in its error, diverged runs, a hostile name."""
    exp = tmp_path_factory.mktemp("report") / "synthetic"
    grid = {
        "architecture": ["rnn", "lstm"],
        "activation": ["tanh", "relu"],
        "clip": ["none", "norm:1.0"],
    }
    simulate.write_experiment(
        exp,
        grid,
        seeds=2,
        epochs=3,
        steps_per_epoch=4,
        name=f"demo {EVIL}",
        failed=lambda axes, seed: (
            axes["architecture"] == "rnn" and axes["clip"] == "none" and seed == 1
        ),
    )
    build_report(exp)
    return exp


def test_report_has_every_section_and_figure(synthetic):
    html = (synthetic / "report.html").read_text()
    for heading in HEADINGS:
        assert f">{heading}</h" in html
    for slug in (
        "convergence",
        "gradient_norm",
        "heatmap_score",
        "heatmap_divergence",
        "main_effects",
        "interactions",
    ):
        assert f'id="fig-{slug}"' in html and (synthetic / "figures" / f"{slug}.png").exists()
    assert (
        "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
    )  # offline
    assert "2 failed" in html and "ANOVA" in html
    for name in ("runs", "history", "steps"):
        assert (synthetic / "tables" / f"{name}.parquet").exists()


def test_user_strings_are_escaped(synthetic):
    html = (synthetic / "report.html").read_text()
    assert EVIL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;synthetic&gt; failure" in html  # the failed run's error message
    md = (synthetic / "report.md").read_text()
    assert EVIL not in md


def test_report_md_prints_apostrophes_and_quotes_as_they_are(synthetic):
    # Markdown is not HTML: only what would start raw HTML is replaced (a tag's '<').
    md = (synthetic / "report.md").read_text()
    assert "the runs' min-max range" in md
    assert "&#39;" not in md and "&#34;" not in md
    assert "&lt;script>alert(1)&lt;/script>" in md  # the hostile name, neutralized


def test_one_environment_factory_escapes_html_and_neutralizes_markdown():
    from keras_ablate.report.templating import environment

    text = 'runs\' <b>range</b> & "A < B" &amp;'
    html = environment("html").from_string("{{ x }}").render(x=text)
    md = environment("markdown").from_string("{{ x }}").render(x=text)
    assert html == "runs&#39; &lt;b&gt;range&lt;/b&gt; &amp; &#34;A &lt; B&#34; &amp;amp;"
    assert md == 'runs\' &lt;b>range&lt;/b> & "A < B" &amp;amp;'
    with pytest.raises(ValueError, match="html"):
        environment("latex")


def test_markdown_links_figures_next_to_it(synthetic):
    md = (synthetic / "report.md").read_text()
    links = [line.split("](")[1].rstrip(")") for line in md.splitlines() if line.startswith("![")]
    assert len(links) >= 6 and all((synthetic / link).exists() for link in links)
    assert "## Factor effects" in md and "| level |" in md


def test_report_command_does_not_import_tensorflow(synthetic):
    code = (
        "import sys; from keras_ablate.cli import main; "
        f"assert main(['report', {str(synthetic)!r}]) == 0; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'imported TF'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_report_builds_on_partial_results(tmp_path):
    exp = tmp_path / "partial"
    simulate.write_experiment(
        exp, {"clip": ["none", "norm:1.0"]}, seeds=1, epochs=2, steps_per_epoch=2
    )
    folders = sorted((exp / "runs").iterdir())
    shutil.rmtree(folders[0])  # a run still to come
    (exp / "runs" / ".tmp-abc-123").mkdir()  # one being written
    build_report(exp)
    html = (exp / "report.html").read_text()
    assert "1 missing" in html and "no axis has two levels" in html


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian package `chromium`)")
def test_report_renders_in_headless_chromium(synthetic, tmp_path):
    from PIL import Image

    url = (synthetic / "report.html").as_uri()
    png = tmp_path / "shot.png"
    shot = subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={tmp_path / 'a'}",
            f"--screenshot={png}",
            "--window-size=1280,2000",
            "--enable-logging=stderr",
            "--v=0",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert png.exists(), shot.stderr[-2000:]
    pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.005  # text and figures, not a blank page
    errors = [
        line
        for line in shot.stderr.splitlines()
        if "Uncaught" in line or ("CONSOLE" in line and "rror" in line)
    ]
    assert not errors, errors
    dom = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'b'}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert 'data-rendered="ok"' in dom  # the page's own script ran to the end
    assert 'class="js-error"' not in dom  # and no script error was caught on the page
    for heading in HEADINGS:
        assert f">{heading}</h" in dom


@pytest.mark.slow
def test_report_on_a_tiny_real_run(write_yaml, tmp_path):
    # Global-norm clipping at 0.12 clips some of the cnn's steps (raw norms ~0.10-0.15 here)
    # and none of the lstm's (~0.01-0.09), so the clip rate is neither all 0 nor all 1.
    tiny_yaml = write_yaml(TINY.replace('"norm:1.0"', '"global_norm:0.12"'), "tiny.yaml")
    results = tmp_path / "results"
    assert main(["run", str(tiny_yaml), "--results-dir", str(results)]) == 0
    assert main(["report", str(tiny_yaml), "--results-dir", str(results)]) == 0
    exp = results / "tiny"
    html = (exp / "report.html").read_text()
    assert "<h1>tiny</h1>" in html and "4 ok" in html and 'id="fig-gradient_norm"' in html
    import pandas as pd

    runs = pd.read_parquet(exp / "tables" / "runs.parquet")
    assert (
        len(runs) == 4 and runs["score"].notna().all() and runs["grad/log10_norm_std"].notna().all()
    )
    # The clip rate is the share of steps where clipping changed the gradient: with a global
    # norm threshold c, the steps whose raw global norm (each run's steps.parquet) exceeds c.
    expected = {}
    for _, run in runs.iterrows():
        steps = pd.read_parquet(exp / "runs" / run["run_id"] / "steps.parquet")
        limit = 0.12 if str(run["clip"]) == "global_norm:0.12" else np.inf
        expected[run["run_id"]] = float((steps["grad/global_norm"] > limit).mean())
    assert runs.set_index("run_id")["grad/clip_rate"].to_dict() == pytest.approx(expected)
    assert 0 < max(expected.values()) < 1  # some steps of a run clipped, not all
