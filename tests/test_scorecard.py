"""locedit.scorecard: the book's scorecard page and the README's table are generated from the results files, a
planned chapter without results is pending, and every claim in the chapters states its criterion."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from locedit import scorecard
from locedit.results import ChapterResults, Claim, verdict

ROOT = Path(__file__).resolve().parents[1]
TOC = """format: jb-book
root: intro
parts:
  - caption: Chapters
    chapters:
      - file: chapters/00_toolkit
      - file: chapters/01_rome
      - file: chapters/03_concept_editing   # coming
  - caption: Back matter
    chapters:
      - file: references
"""


@pytest.fixture
def fake(tmp_path):
    """A results folder with chapters 00 (no claims) and 01 (one claim of each verdict), a toc that also plans
    03, and a chapter source for 01's title."""
    results = tmp_path / "executed"
    ChapterResults("00_toolkit", "smollm2-135m", quick=True).write(results)
    r = ChapterResults("01_rome", "gemma3-270m", quick=False)
    r.claims = [
        Claim("ROME edits generalise", "PS 96.4", "PS 95.0", verdict(True), criterion="reproduced if PS ≥ 70"),
        Claim("MLP peak in the middle", "layer 17 of 48", "layer 5 of 30", verdict(False, partly=True),
              criterion="reproduced if …; partly if the peak is at the last subject token"),
        Claim("FT-L reaches the edit", "ES 99.1", "ES 10 <b>", verdict(False), criterion="reproduced if ES ≥ 90"),
        Claim("Two checkpoints agree", "75.4%", "no base checkpoint offline", verdict(None)),
    ]  # fmt: skip
    r.write(results)
    (tmp_path / "toc.yml").write_text(TOC)
    (tmp_path / "chapters").mkdir()
    (tmp_path / "chapters" / "01_rome.py").write_text("# %% [markdown]\n# # 1. Editing facts (ROME)\n#\n# text\n")
    return tmp_path


def test_page_is_generated_from_the_results(fake):
    results = scorecard.load_results(fake / "executed")
    assert set(results) == {"00_toolkit", "01_rome"}
    text = scorecard.page(results, scorecard.toc_chapters(fake / "toc.yml"), fake / "chapters")
    assert text.startswith("# Reproduction scorecard")
    assert "## 1. Editing facts (ROME)" in text  # the title comes from the chapter's source
    # every claim, with its criterion, the paper's number, ours and a coloured verdict cell
    for claim in results["01_rome"]["claims"]:
        assert claim["claim"] in text and claim["paper"] in text
    assert "reproduced if PS ≥ 70" in text and "ES 10 &lt;b&gt;" in text  # escaped, not raw HTML
    cells = re.findall(r'class="locedit-verdict-cell"><span class="locedit-verdict locedit-verdict-([a-z-]+)"', text)
    assert cells == ["reproduced", "partly", "not-reproduced", "not-tested"]
    assert scorecard.NO_CRITERION in text  # the claim without a criterion is flagged, not silently accepted
    # model, size and when it ran, per chapter
    assert "gemma3-270m" in text and "full size" in text and "quick" in text
    assert results["01_rome"]["finished"][:10] in text
    assert "1 reproduced, 1 partly, 1 not reproduced, 1 not tested" in text


def test_a_planned_chapter_without_results_is_pending(fake):
    results = scorecard.load_results(fake / "executed")
    planned = scorecard.toc_chapters(fake / "toc.yml")
    assert planned == ["00_toolkit", "01_rome", "03_concept_editing"]
    text = scorecard.page(results, planned, fake / "chapters")
    assert "## 3. Concept editing" in text
    section = text.split("## 3. Concept editing", 1)[1]
    assert "Pending" in section and "locedit-verdict" not in section
    assert re.search(r'<tr class="locedit-pending"><td>3\. Concept editing</td>.*?pending', text)
    block = scorecard.readme_block(results, planned, fake / "chapters")
    assert "| 3. Concept editing | — | pending | — |" in block
    # a results file appears as soon as the chapter has run
    ChapterResults("03_concept_editing", "smollm2-135m", quick=True).write(fake / "executed")
    block = scorecard.readme_block(scorecard.load_results(fake / "executed"), planned)
    assert "pending" not in block and "| 3. Concept editing | (no paper claims) |" in block


def test_readme_block_is_generated_and_replaced_between_the_markers(fake):
    results = scorecard.load_results(fake / "executed")
    block = scorecard.readme_block(results, scorecard.toc_chapters(fake / "toc.yml"), fake / "chapters")
    assert block.startswith(scorecard.README_START) and block.endswith(scorecard.README_END)
    rows = [line for line in block.splitlines() if line.startswith("| 1. Editing facts")]
    assert [row.split(" | ")[2] for row in rows] == ["🟢 reproduced", "🟡 partly", "🔴 not reproduced", "⚪ not tested"]
    assert all(row.endswith("gemma3-270m, full |") for row in rows)
    assert "quick" in block and results["01_rome"]["finished"][:10] in block  # which results it was made from
    readme = fake / "README.md"
    readme.write_text(f"# Title\n\nintro\n\n{scorecard.README_START}\nold table\n{scorecard.README_END}\n\n## More\n")
    assert scorecard.update_readme(readme, block)
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# Title\n\nintro\n\n") and text.endswith("\n\n## More\n")
    assert text.count(scorecard.README_START) == 1 and "| 1. Editing facts (ROME) | ROME edits generalise |" in text
    assert not scorecard.update_readme(readme, block)  # unchanged the second time
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="no scorecard markers"):
        scorecard.update_readme(readme, block)


def test_command_line_writes_page_and_readme(fake, capsys):
    readme = fake / "README.md"
    readme.write_text(f"{scorecard.README_START}\n{scorecard.README_END}\n")
    page = fake / "scorecard.md"
    scorecard.main(["--results", str(fake / "executed"), "--toc", str(fake / "toc.yml"), "--chapters",
                    str(fake / "chapters"), "--page", str(page), "--readme", str(readme)])  # fmt: skip
    assert "locedit-verdict-partly" in page.read_text() and "🟡 partly" in readme.read_text()
    assert "wrote" in capsys.readouterr().out


def test_old_results_with_nan_are_read_and_bad_files_named(tmp_path):
    (tmp_path / "01_rome.results.json").write_text('{"chapter": "01_rome", "metrics": {"GE": NaN}, "claims": []}')
    assert scorecard.load_results(tmp_path)["01_rome"]["metrics"] == {"GE": None}
    (tmp_path / "02_x.results.json").write_text("{not json")
    with pytest.raises(ValueError, match="02_x.results.json"):
        scorecard.load_results(tmp_path)


def test_the_real_toc_plans_every_written_chapter():
    planned = scorecard.toc_chapters(ROOT / "book" / "_toc.yml")
    assert {p.stem for p in (ROOT / "chapters").glob("*.py")} <= set(planned)


def _claim_calls(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_text())
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "Claim"]


@pytest.mark.parametrize("chapter", sorted(p.name for p in (ROOT / "chapters").glob("*.py")))
def test_every_claim_in_the_chapters_states_its_criterion(chapter):
    """The criterion is required of every claim a chapter makes: Claim(..., criterion="reproduced if …")."""
    for call in _claim_calls(ROOT / "chapters" / chapter):
        keywords = {k.arg for k in call.keywords}
        assert "criterion" in keywords or len(call.args) >= 5, (
            f"{chapter}:{call.lineno}: a Claim without criterion=: say in words when it counts as reproduced "
            '(and partly), e.g. criterion="reproduced if ES ≥ 90 and PS ≥ 70; partly if ES ≥ 90 and PS ≥ 50"'
        )


def test_the_criterion_check_sees_a_claim_without_one(tmp_path):
    path = tmp_path / "c.py"
    path.write_text('Claim(claim="a", paper="b", ours="c", verdict="partly")\n')
    assert [c.lineno for c in _claim_calls(path)] == [1] and not _claim_calls(path)[0].args


def test_claims_html_escapes_and_colours():
    text = scorecard.claims_html([{"claim": "x<y", "paper": "p", "ours": "o", "verdict": "partly",
                                   "criterion": "partly if a & b"}], meta="quick run")  # fmt: skip
    assert "x&lt;y" in text and "partly if a &amp; b" in text and "<caption>quick run</caption>" in text
    assert 'class="locedit-verdict locedit-verdict-partly"' in text
    assert json.dumps(text)  # plain text, displayable with IPython.display.HTML


def test_other_models_stand_beside_the_books_own_claim_by_claim(fake):
    """results/<model>/*.results.json: each claim's verdict on that model, matched by the claim's text; a claim its
    run lacks and a chapter it did not run are said to be so, in the page and in the README's extra column."""
    results = scorecard.load_results(fake / "executed")
    other = ChapterResults("01_rome", "other-model", quick=True)
    other.claims = [
        Claim("ROME edits generalise", "PS 96.4", "PS 41.0 <i>", verdict(False), criterion="reproduced if PS ≥ 70"),
        Claim("MLP peak in the middle", "layer 17 of 48", "layer 9 of 18", verdict(True), criterion="…"),
    ]  # fmt: skip
    other.write(fake / "results" / "other-model")
    others = scorecard.load_other_models(fake / "results")
    assert list(others) == ["other-model"] and list(others["other-model"]) == ["01_rome"]
    assert scorecard.load_other_models(fake / "missing") == {} == scorecard.load_other_models(None)

    planned = scorecard.toc_chapters(fake / "toc.yml")
    text = scorecard.page(results, planned, fake / "chapters", others)
    section = text.split("## 1. Editing facts (ROME)", 1)[1]
    table = section.split('class="locedit-scorecard locedit-models"', 1)[1]
    assert "<code>other-model</code><br>quick size" in table and "PS 41.0 &lt;i&gt;" in table
    rows = table.split("<tr>")[2:]  # after the header row
    assert "ROME edits generalise" in rows[0] and "locedit-verdict-not-reproduced" in rows[0].split("</td>", 2)[2]
    assert "not in that run" in rows[2] and "not in that run" in rows[3]  # the two claims the other run lacks
    assert "locedit-models" not in text.split("## 1. Editing facts (ROME)", 1)[0]  # chapter 0: no other run

    block = scorecard.readme_block(results, planned, fake / "chapters", others)
    assert "| chapter | claim | verdict | model, size | other-model |" in block
    rows = [line for line in block.splitlines() if line.startswith("| 1. Editing facts")]
    assert [row.rsplit(" | ", 1)[1] for row in rows] == [
        "🔴 not reproduced (quick) |", "🟢 reproduced (quick) |", "not run |", "not run |"
    ]  # fmt: skip
    assert "| 3. Concept editing | — | pending | — | — |" in block
    # without other models the README's table keeps its four columns
    assert "| chapter | claim | verdict | model, size |\n" in scorecard.readme_block(results, planned)
