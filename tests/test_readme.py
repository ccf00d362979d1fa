"""The README's example runs and prints what the README says it prints."""
import contextlib
import gc
import io
import re
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_example_prints_what_the_readme_shows():
    text = README.read_text()
    code = re.search(r"## An example\n\n```python\n(.*?)```", text, re.S).group(1)
    shown = re.search(r"prints\n\n```\n(.*?)```", text, re.S).group(1)
    assert len(code.strip().splitlines()) <= 16
    gc.collect()
    mg.get_tape().clear()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {})
    assert out.getvalue() == shown


def test_readme_tbptt_example_learns():
    text = README.read_text()
    code = re.search(r"## Training a recurrent network.*?```python\n(.*?)```", text, re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 20
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {})
    lines = out.getvalue().splitlines()
    losses = [float(line.rsplit(" ", 1)[1]) for line in lines]
    assert len(losses) == 4 and all("100 updates" in line for line in lines)
    assert losses[-1] < losses[0] / 10  # it learns the delay


def test_readme_layer_example_gives_the_cell_examples_losses():
    text = README.read_text()
    cells = re.search(r"## Training a recurrent network.*?```python\n(.*?)```", text, re.S).group(1)
    layer = re.search(r"### Faster: a sequence layer.*?```python\n(.*?)```", text, re.S).group(1)
    printed = []
    namespace = {}
    for code in (cells, layer):  # the layer example reuses the data of the cell example
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(README), "exec"), namespace)
        printed.append([float(line.rsplit(" ", 1)[1]) for line in out.getvalue().splitlines()])
    assert len(printed[1]) == 4 and printed[1][-1] < printed[1][0] / 10
    for a, b in zip(*printed):  # float32 and three printed digits
        assert abs(a - b) <= 0.002 + 0.01 * a


def test_the_pytorch_port_example_trains_and_keeps_pytorchs_layout():
    text = README.read_text()
    code = re.search(r"## From PyTorch to minigrad\n.*?```python\n(.*?)```", text, re.S).group(1)
    namespace = {}
    exec(compile(code, str(README), "exec"), namespace)
    model, hidden, logits = namespace["model"], namespace["hidden"], namespace["logits"]
    assert not model.training and not model.drop.training and not model.rnn.training
    assert logits.shape == (20, 4, 50) and [h.shape for h in hidden] == [(2, 4, 32)] * 2
    assert list(model.state_dict())[:6] == [
        "encoder.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0",
        "rnn.bias_hh_l0", "rnn.weight_ih_l1"]
    assert abs(float(namespace["loss"].item()) - np.log(50)) < 0.5  # random tokens: about log 50
    tokens = namespace["text"][:20]
    first = model(tokens, None)[0].data
    np.testing.assert_array_equal(model(tokens, None)[0].data, first)  # eval: deterministic


def test_the_checkpoint_example_round_trips(tmp_path, monkeypatch):
    text = README.read_text()
    code = re.search(r"## Checkpoints and interchange\n.*?```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)  # it writes run.npz and lstm.safetensors where it runs
    out, namespace = io.StringIO(), {}
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), namespace)
    assert out.getvalue() == "['model/weight_ih_l0', 'model/weight_hh_l0']\n"
    model, weights, w = namespace["model"], namespace["weights"], namespace["w"]
    assert list(weights) == sorted(model.state_dict())
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(weights[name], value)
    assert np.shares_memory(w, model.weight_ih_l0.data)
    assert namespace["x"].shape == (5, 3)


def test_readme_states_the_semantics_of_bptt_py():
    """The seven rules in the README are the ones in train_sequence's docstring, word for word."""
    from minigrad.bptt import train_sequence

    def words(text):
        return " ".join(text.replace("\\*", "*").replace("`", "").split())

    readme = re.search(r"steps\nnumbered 1..n:\n\n(.*?)\n\n(?:###|When to use)", README.read_text(), re.S).group(1)
    doc = train_sequence.__doc__.split("steps numbered 1..n:")[1]
    rules = lambda text: [words(r) for r in re.split(r"\n *\d\. ", "\n" + text.strip())[1:]]  # noqa: E731
    assert len(rules(readme)) == 7
    assert rules(readme) == rules(doc)


def test_ci_runs_the_readme_commands():
    text = README.read_text()
    install, tests = re.findall(r"```sh\n(.*?)\n```", text, re.S)[:2]
    ci = (README.parent / ".ci" / "run").read_text().splitlines()
    assert install in ci and tests in ci


def _gpu_examples():
    text = README.read_text()
    section = re.search(r"## On a GPU\n(.*?)\n## ", text, re.S).group(1)
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_gpu_move_example_runs_on_the_cpu_with_cpu_for_cuda():
    """The GPU section's first example, with "cuda" read as "cpu": the API it shows exists
    and does what its comments say (on a GPU the last test runs it as written)."""
    move, _ = _gpu_examples()
    namespace = {}
    exec(compile(move.replace('"cuda"', '"cpu"'), str(README), "exec"), namespace)
    hs, h, lstm = namespace["hs"], namespace["h"], namespace["lstm"]
    assert hs.shape == (50, 64, 256) and h.shape == (1, 64, 256)
    assert all(p.grad is not None and p.grad.shape == p.shape for p in lstm.parameters())
    assert type(h.numpy()) is np.ndarray


def _kernels_forbidden(monkeypatch):
    """Every kernel launch wrapper (minigrad.backends.cuda.<primitive>) fails the test if called."""
    from minigrad import backends
    from minigrad.backends import cuda

    def forbidden(name):
        def launch(*args, **kwargs):
            pytest.fail(f"the kernel {name} ran on the CPU; the README says the NumPy references always run there")
        return launch
    for name in backends.PRIMITIVES:
        monkeypatch.setattr(cuda, name, forbidden(name))


def _cpu_work():
    """A bit of everything the switch's families cover, on the CPU: a matmul, elementwise ops,
    a sum, an LSTM layer (cells, window), a loss and its backward, an optimizer step. Returns
    the arrays it made, and checks those NumPy computes by a single call against NumPy."""
    from minigrad import nn, optim
    from minigrad.nn import functional as F
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 7)), rng.standard_normal((7, 3))
    x, w = mg.tensor(a), mg.tensor(b)
    y = (x @ w).tanh() + x.sum(axis=1, keepdims=True)
    np.testing.assert_array_equal((x @ w).data, np.dot(a, b))     # NumPy's exact results
    np.testing.assert_array_equal(y.data, np.tanh(np.dot(a, b)) + np.sum(a, axis=1, keepdims=True))
    lstm = nn.LSTM(3, 4, dtype="float64", rng=1)
    hs, (h, c) = lstm(mg.tensor(rng.standard_normal((6, 2, 3))))
    loss = F.cross_entropy(hs.reshape(12, 4), np.arange(12) % 4)
    loss.backward()
    optim.SGD(lstm.parameters(), lr=0.1, momentum=0.9).step()
    return [y.data, hs.data, c.data, loss.data] + [p.data for p in lstm.parameters()]


def test_the_backend_switch_example_sets_the_paths_it_says(monkeypatch):
    """The switch example, its `...` replaced by a probe: each line sets the path its comment
    says, `with using(...)` only inside its block, and the last line restores "auto". On the
    CPU the NumPy references always run (README): under every path, no kernel runs and the numbers are
    the same, NumPy's own where NumPy computes them."""
    from minigrad import backends
    _, switch = _gpu_examples()
    code = switch.replace("    ...\n", "    probe()\n")
    assert code.count("probe()") == 2
    seen = []

    def probe():
        seen.append({f: backends.path(f) for f in backends.FAMILIES})
        seen[-1]["work"] = _cpu_work()
    _kernels_forbidden(monkeypatch)
    before = {f: backends.path(f) for f in backends.FAMILIES}  # restored at the end
    try:
        for family in backends.FAMILIES:                        # the defaults, as after import
            backends.use(family, "auto")
        exec(compile(code, str(README), "exec"), {"probe": probe})
        after = {f: backends.path(f) for f in backends.FAMILIES}
        runs = {}
        for path in backends.PATHS:
            with backends.using(**dict.fromkeys(backends.FAMILIES, path)):
                runs[path] = _cpu_work()
    finally:
        for family, path in before.items():
            backends.use(family, path)

    def paths(**forced):
        return {**dict.fromkeys(backends.FAMILIES, "auto"), **forced}
    assert [{f: s[f] for f in backends.FAMILIES} for s in seen] == [
        paths(matmul="numpy", cells="numpy"),      # use(matmul) holds; using(cells) inside its block
        paths(matmul="numpy", window="numpy"),     # cells is back to auto after its block
    ]
    assert after == paths()                        # the last line: matmul back to auto
    for name, got in [("inside using(cells=...)", seen[0]["work"]),
                      ("inside using(window=...)", seen[1]["work"])] + list(runs.items()):
        for a, b in zip(got, runs["numpy"]):
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_the_gpu_example_runs_on_a_gpu():
    from minigrad import backends
    if not backends.cuda_available():
        pytest.skip("needs a usable CUDA GPU (CuPy and a driver); this machine has none")
    move, _ = _gpu_examples()
    namespace = {}
    exec(compile(move, str(README), "exec"), namespace)
    assert namespace["hs"].device == "cuda:0" and namespace["lstm"].weight_hh.grad is not None


def test_the_reference_list_names_everything_public():
    """"What is there" names every public function, class and module, and PyTorch's Tensor
    methods minigrad has: a name added to an __all__ without a word in the README fails here."""
    from minigrad import nn, optim
    from minigrad.nn import functional as F
    from minigrad.optim import lr_scheduler
    text = README.read_text()
    section = text[text.index("## What is there"):text.index("## Layout")]
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", section))
    schedulers = [n for n in dir(lr_scheduler) if n.endswith("LR") or n == "ReduceLROnPlateau"]
    methods = ("view reshape size dim numel permute unsqueeze squeeze flatten expand repeat clone "
               "tolist item argmax argmin min chunk split retain_grad register_hook").split()
    public = [*mg.__all__, *nn.__all__, *F.__all__, *optim.__all__, *schedulers, *methods]
    assert len(schedulers) == 8
    assert [name for name in public if name not in words] == []


def test_the_stream_example_reads_a_file_in_pieces_and_learns(tmp_path):
    """The README's stream example, on a file of one 64 KiB piece and a bit (so windows cross
    a piece boundary): a repetitive text, so that the loss per byte falls far below the 5.5
    nats of uniform bytes."""
    text = README.read_text()
    code = re.search(r"### A stream: truncation across.*?```python\n(.*?)```", text, re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 20
    path = tmp_path / "text.txt"
    words = np.random.default_rng(0).choice(["the ", "cat ", "sat ", "on ", "a ", "mat. "], 20_000)
    path.write_text("".join(words))  # about 70 KB
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {"path": str(path)})
    found = re.fullmatch(r"(\d+) updates, the last ([\d.]+) nats per byte\n", out.getvalue())
    assert found, out.getvalue()
    assert int(found.group(1)) == (path.stat().st_size - 1) // 50 + 1  # every 50 bytes, and the flush
    assert float(found.group(2)) < 1.5
