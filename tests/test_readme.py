"""Every table or fenced block of figures in the READMEs names the command that produced it, and that
command exists (figures in running prose are not checked); every variable the code reads is documented."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
READMES = [REPO / "README.md", REPO / "deploy" / "README.md"]
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


@pytest.mark.parametrize("readme", READMES, ids=lambda path: str(path.relative_to(REPO)))
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
