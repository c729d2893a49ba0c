"""Every table or fenced block of figures in the READMEs and docs/ names the command that produced it, and
that command exists (figures in running prose are not checked); every `make` target they name exists,
every file they link to exists, the README's headline table is the one docs/results.md has, `make
bench-recipes` runs the recipes of the table credited to it, under its rows' names; every variable the
code reads is documented."""

import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
READMES = [REPO / "README.md", REPO / "deploy" / "README.md"]
DOCS = [REPO / "docs" / "results.md", REPO / "docs" / "benchmarks.md"]
PAGES = [*READMES, *DOCS, REPO / "ARCHITECTURE.md"]
FIGURE = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])|\b\d+(?:\.\d+)? ?(?:min|ms|GB|MB|images/s|req/s)\b")
"""A measured figure: a decimal number, or a number with a unit of time, size or rate."""
COMMAND = re.compile(r"`(make [a-z][a-z-]*|(?:\.venv/bin/)?python (?:-m \S+|bench/\w+\.py)[^`]*|bench/\w+\.py)`")


def _without_code_spans_and_links(text: str) -> str:
    text = re.sub(r"`[^`]*`", "", text)
    return re.sub(r"https?://\S+|\([^)]*\.(?:md|png)\)", "", text)


def figure_blocks(path: Path) -> list[tuple[int, str, str]]:
    """(line, figure block, the text between it and the previous figures or heading) of every table or
    code block with figures."""
    blocks, section, lines = [], [], path.read_text().splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("#"):
            section = []
        if line.startswith("```"):
            end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
            block, language = "\n".join(lines[index + 1 : end]), line[3:].strip()
            if language in ("", "text") and FIGURE.search(block):
                blocks.append((index + 1, block, "\n".join(section)))
                section = []  # the next figures name their own command
            else:
                section += lines[index : end + 1]
            index = end + 1
            continue
        if line.startswith("|"):
            end = index
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            block = "\n".join(lines[index:end])
            if FIGURE.search(_without_code_spans_and_links(block)):
                blocks.append((index + 1, block, "\n".join(section)))
                section = []  # the next figures name their own command
            else:
                section += lines[index:end]
            index = end
            continue
        section.append(line)
        index += 1
    return blocks


def command_exists(command: str) -> bool:
    if command.startswith("make "):
        return re.search(rf"^{re.escape(command[5:])}:", (REPO / "Makefile").read_text(), re.MULTILINE) is not None
    script = re.search(r"bench/\w+\.py", command)
    if script:
        return (REPO / script.group()).is_file()
    module = re.search(r"-m (\S+)", command).group(1)
    return (REPO / (module.replace(".", "/") + ".py")).is_file()


@pytest.mark.parametrize("readme", READMES + DOCS, ids=lambda path: str(path.relative_to(REPO)))
def test_every_figure_names_the_command_that_produced_it(readme):
    unnamed = []
    for line, block, before in figure_blocks(readme):
        commands = COMMAND.findall(before)
        if not commands:
            unnamed.append(f"line {line}: {block.splitlines()[0][:80]}")
        for command in commands:
            assert command_exists(command), f"{readme.name} line {line} names `{command}`, which does not exist"
    assert not unnamed, f"figures in {readme.name} without the command that produced them:\n" + "\n".join(unnamed)


def test_a_figure_without_its_command_is_caught(tmp_path):
    page = tmp_path / "README.md"
    page.write_text("# Results\n\nMeasured somewhere.\n\n| model | ROC-AUC |\n|---|---|\n| basic_cnn | 0.948 |\n")
    assert figure_blocks(page) and not COMMAND.findall(figure_blocks(page)[0][2])


def test_every_variable_the_code_reads_is_in_the_readme():
    from tests.deploy.deploy_support import variables_read_by_code

    readme = (REPO / "README.md").read_text()
    read = variables_read_by_code()
    assert read, "no environment reads found: the pattern no longer matches the code"
    missing = sorted(name for name in read if f"`{name}`" not in readme)
    assert not missing, f"read by the code but not documented in README.md: {missing}"


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), re.MULTILINE))


@pytest.mark.parametrize("page", PAGES, ids=lambda path: str(path.relative_to(REPO)))
def test_every_make_target_named_exists(page):
    text = page.read_text()
    named = set(re.findall(r"`make ([a-z](?:[a-z-]*[a-z])?)(?![a-z*-])", text))  # not a pattern (`make bench-*`)
    listed = re.findall(r"`make [a-z][a-z-]*`(?:, `[a-z][a-z-]*`)+", text)  # `make bench-io`, `bench-serving`
    named |= {name for targets in listed for name in re.findall(r"`([a-z][a-z-]*)`", targets)}
    assert named, f"{page.name} names no make target: the pattern no longer matches"
    assert not named - makefile_targets(), f"{page.name} names targets the Makefile lacks: {sorted(named - makefile_targets())}"


@pytest.mark.parametrize("page", PAGES, ids=lambda path: str(path.relative_to(REPO)))
def test_every_linked_file_exists(page):
    links = [link for link in re.findall(r"\]\(([^)\s]+)\)", page.read_text()) if not re.match(r"[a-z]+:|#", link)]
    missing = [link for link in links if not (page.parent / link.split("#")[0]).exists()]
    assert not missing, f"{page.name} links to files that do not exist: {missing}"


def markdown_tables(text: str) -> list[list[str]]:
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables


def test_the_readme_headline_table_is_the_one_in_docs_results():
    readme = (REPO / "README.md").read_text()
    results_section = readme.split("\n## Results\n", 1)[1].split("\n## ", 1)[0]
    figure_tables = [table for table in markdown_tables(results_section) if FIGURE.search("\n".join(table))]
    assert len(figure_tables) == 1, "the README's Results are one table"
    docs_tables = markdown_tables((REPO / "docs" / "results.md").read_text())
    assert figure_tables[0] in docs_tables, "the README's headline table differs from every table of docs/results.md"


def test_make_bench_recipes_runs_the_recipes_of_its_table_under_their_names():
    sys.path.insert(0, str(REPO))
    from bench import recipes
    from skin_cancer_assets.model_zoo import ZOO

    command = re.search(r"^bench-recipes:.*\n\t(.*)$", (REPO / "Makefile").read_text(), re.MULTILINE).group(1)
    model = re.search(r"--model (\S+)", command).group(1)
    names = re.search(r"--recipes (\S+)", command).group(1).split(",")
    assert (model, tuple(names)) == (recipes.DEFAULT_MODEL, recipes.DEFAULT_RECIPES), "the Makefile and the script's defaults differ"
    results = (REPO / "docs" / "results.md").read_text()
    credited = results.split("`make bench-recipes`", 1)[1]
    table = markdown_tables(credited)[0]
    rows = [line.split("|")[1].strip().split(" ")[0] for line in table[2:]]
    assert rows == names, f"the rows of the table credited to make bench-recipes are {rows}, it runs {names}"
    spec = next(spec for spec in ZOO if spec.name == model)
    assert list(recipes.checked_recipes(spec, names)) == names  # refused before training otherwise


def test_a_recipe_that_does_not_apply_to_the_model_is_refused_before_anything_trains():
    sys.path.insert(0, str(REPO))
    from bench import recipes
    from skin_cancer_assets.model_zoo import ZOO

    basic_cnn = next(spec for spec in ZOO if spec.name == "basic_cnn")
    with pytest.raises(SystemExit, match="fine_tune_learning_rate_1e-3.*basic_cnn does not have"):
        recipes.checked_recipes(basic_cnn, ["zoo", "fine_tune_learning_rate_1e-3"])
    with pytest.raises(SystemExit, match="unknown recipes"):
        recipes.checked_recipes(basic_cnn, ["no_such_recipe"])
