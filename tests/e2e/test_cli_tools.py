"""The single-process tools as a user runs them: `tandem perplexity` on a text file."""
import json
import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ESSAY = os.path.join(ROOT, "tests/data/goldens/long_essay.txt")


def perplexity(*args):
    return subprocess.run([os.environ["TANDEM_BIN"], "perplexity", "--model", os.environ["TANDEM_MODEL"],
                           "--threads", "2", *args], capture_output=True, text=True, timeout=300)


def test_perplexity_prints_progress_and_ends_with_the_value_llama_cpp_gives():
    out = perplexity("--file", ESSAY, "--ctx", "128", "--chunks", "4")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert [l.split()[0] for l in lines if l.startswith("[")][:4] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    last = re.fullmatch(r"perplexity: ([0-9.]+)", lines[-1])
    assert last, lines[-1]
    with open(os.path.join(ROOT, "tests/data/goldens/smollm2_perplexity.json")) as f:
        golden = next(g for g in json.load(f)["tiers"]["q4_1"] if g["ctx"] == 128)
    # llama-perplexity's running value after 4 chunks of the same text (Q4_1 rounding: a few %).
    assert abs(float(last.group(1)) / golden["running"][3] - 1) < 0.03, (last.group(1), golden["running"][3])


def test_perplexity_explains_a_text_too_short_and_a_missing_file(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("Too short to score.")
    out = perplexity("--file", str(short), "--ctx", "128")
    assert out.returncode == 2
    assert "needs at least 256 (two chunks)" in out.stderr, out.stderr
    out = perplexity("--file", str(tmp_path / "missing.txt"))
    assert out.returncode == 1 and "cannot read" in out.stderr, out.stderr
    out = perplexity()
    assert out.returncode == 2 and "--file" in out.stderr, out.stderr
