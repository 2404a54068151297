"""Citations stay inside the repository: no tracked file outside outputs/ cites the team's fact sheets or design
notes beside the repo (their facts are in docs/sources.md, the architecture in docs/architecture.md), and every citation of docs/sources.md ("docs/sources.md, <Section>" or a link to "sources.md#<anchor>") names a
heading that exists there (and a markdown link's relative path reaches that file)."""
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = REPO / "docs" / "sources.md"
# Built from parts so that this file does not match itself.
OUTSIDE = re.compile("|".join([*(re.escape(f"{n}.md") for n in ("protocol", "performance", "datasets", "style")),
                               re.escape("shared" + "/reference"), re.escape("DESIGN" + " §")]))
SECTION = re.compile(r"docs/sources\.md,[ \t]*(.*)")   # the section on the same line
ANCHOR = re.compile(r"(?:\]\(([^)#\s]*sources\.md)|sources\.md)#([\w-]+)")
SELF = ("docs/sources.md", "tests/test_sources.py")   # they describe the citation forms


def _tracked() -> dict[str, str]:
    names = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    out = {}
    for name in names:
        p = REPO / name
        if name.startswith("outputs/") or not p.is_file():   # outputs/ holds executed notebooks: a record
            continue
        out[name] = p.read_bytes().decode("utf-8", errors="ignore")
    return out


def _headings() -> dict[str, str]:
    """heading text -> GitHub anchor, for the ## headings of docs/sources.md."""
    heads = [m.group(1).strip() for m in re.finditer(r"^##+ (.+)$", SOURCES.read_text(), flags=re.M)]
    return {h: re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", h.lower())) for h in heads}


def outside_citations(files: dict[str, str]) -> list[str]:
    return [f"{name}:{i}: {line.strip()}" for name, text in files.items()
            for i, line in enumerate(text.splitlines(), 1) if OUTSIDE.search(line)]


def bad_sources_citations(files: dict[str, str]) -> list[str]:
    heads = _headings()
    anchors = set(heads.values())
    bad = []
    for name, text in files.items():
        if name in SELF:
            continue
        for i, line in enumerate(text.splitlines(), 1):
            for m in SECTION.finditer(line):
                rest = m.group(1)
                if not any(rest.startswith(h) and not rest[len(h):len(h) + 1].isalnum() for h in heads):
                    bad.append(f"{name}:{i}: no section at the start of {rest[:40]!r}")
            for m in ANCHOR.finditer(line):
                link, anchor = m.groups()
                if anchor not in anchors:
                    bad.append(f"{name}:{i}: no heading for #{anchor}")
                if link and not link.startswith("http") and (REPO / name).parent.joinpath(link).resolve() != SOURCES:
                    bad.append(f"{name}:{i}: link {link} does not reach docs/sources.md")
    return bad


def test_no_tracked_file_cites_the_fact_sheets_outside_the_repo():
    hits = outside_citations(_tracked())
    assert not hits, "cite docs/sources.md instead:\n" + "\n".join(hits)


def test_every_sources_citation_names_an_existing_heading():
    files = _tracked()
    assert "docs/sources.md" in files
    bad = bad_sources_citations(files)
    assert not bad, "\n".join(bad)
    cited = sum(len(SECTION.findall(t)) + len(ANCHOR.findall(t)) for n, t in files.items() if n not in SELF)
    assert cited > 50                          # the code's citations do point here


def test_the_checks_catch_what_they_should():
    heads = _headings()
    assert heads["XTREME scorer behaviour"] == "xtreme-scorer-behaviour" and heads["Test vs dev"] == "test-vs-dev"
    sheet = "protocol" + ".md"
    files = {"a.py": f"# lr 1e-5 ({sheet} §3.1)", "b.py": "# docs/sources.md, Hyperparameters",
             "c.py": "# docs/sources.md, Hyper-parameters: lr 1e-5", "g.py": "# (docs/sources.md,\n# Retrieval)",
             "docs/d.md": "[x](sources.md#no-such-heading)",
             "e.md": "[x](sources.md#retrieval)", "f.md": "[x](docs/sources.md#retrieval)"}
    assert outside_citations(files) == [f"a.py:1: # lr 1e-5 ({sheet} §3.1)"]
    design = '"""The phases (DESIGN' + ' §2)."""'
    assert outside_citations({"h.py": design}) == [f"h.py:1: {design}"]
    bad = bad_sources_citations(files)
    assert [b.split(":")[0] for b in bad] == ["b.py", "g.py", "docs/d.md", "e.md"]
    assert bad[3] == "e.md:1: link sources.md does not reach docs/sources.md"
