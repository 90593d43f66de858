"""The table of functions (``fastmvn._table``): every entry is served by every frontend, with
the table's arguments, or is listed as not served with the reason."""

import ast
import inspect
import pathlib

import numpy as np
import pytest

import fastmvn as fm
from fastmvn import _bench, _table, cli, reference
from fastmvn._table import FUNCTIONS, NOT_SERVED


def backends():
    """Each importable backend module, by its name in ``NOT_SERVED``."""
    modules = {}
    for name in ("cuda", "dask", "torch", "jax"):
        try:
            modules[name] = __import__(f"fastmvn.{name}", fromlist=[name])
        except ImportError:
            continue
    return modules


def arguments(function):
    """The array arguments of a public function: its parameters before the keyword-only ones."""
    return [(p.name, p.default) for p in inspect.signature(function).parameters.values()
            if p.kind == p.POSITIONAL_OR_KEYWORD]


def expected(entry):
    return [(p.name, None if p.optional else inspect.Parameter.empty) for p in entry.params]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_cpu_function_has_the_table_arguments_and_docs(name):
    entry = FUNCTIONS[name]
    function = getattr(fm, name)
    assert arguments(function) == expected(entry)
    keywords = inspect.signature(function).parameters
    assert keywords["errors"].default == "raise" and keywords["out"].default is None
    assert ("lower" in keywords) == entry.lower
    assert function.__doc__.startswith(entry.summary)
    for param in entry.params:                                      # the table's line, filled in
        assert f"    {param.name} : (..., {', '.join(param.axes)})" in function.__doc__
    if entry.gradient:
        gradient = getattr(fm, entry.gradient_name)
        assert arguments(gradient) == expected(entry)
        assert ("lower" in inspect.signature(gradient).parameters) == entry.lower
    assert not hasattr(fm, f"{name}_value_and_grad") or entry.gradient


@pytest.mark.parametrize("name", FUNCTIONS)
def test_reference_specifies_every_entry(name):
    assert arguments(getattr(reference, name)) == expected(FUNCTIONS[name])


@pytest.mark.parametrize("backend", ["cuda", "dask", "torch", "jax"])
def test_every_entry_is_served_by_every_backend_or_listed(backend):
    module = backends().get(backend)
    if module is None:
        pytest.skip(f"fastmvn.{backend} cannot be imported here")
    not_served = NOT_SERVED.get(backend, {})
    assert set(not_served) <= set(FUNCTIONS) and all(reason for reason in not_served.values())
    for name, entry in FUNCTIONS.items():
        if name in not_served:
            assert not hasattr(module, name), f"fastmvn.{backend}.{name} is served, yet listed as not served"
            continue
        function = getattr(module, name)
        assert name in module.__all__
        assert arguments(function) == expected(entry), name
        keywords = inspect.signature(function).parameters
        assert ("lower" in keywords) == entry.lower and keywords["errors"].default == "raise", name
        assert function.__doc__.startswith(entry.summary), name
        gradient = getattr(module, f"{name}_value_and_grad", None)
        if backend not in ("torch", "jax"):                         # these differentiate the value itself
            assert (gradient is not None) == entry.gradient, name
            if gradient is not None:
                assert arguments(gradient) == expected(entry) and "wrt" in inspect.signature(gradient).parameters


def test_value_functions_of_backends_agree_with_cpu(rng):
    """Each served entry, called through every importable backend on one small batch, gives
    the CPU result."""
    for backend, module in backends().items():
        for name in FUNCTIONS:
            if name in NOT_SERVED.get(backend, {}):
                continue
            args = _bench.random_inputs(name, 3, 3, 2)
            expected_value = getattr(fm, name)(*args)
            if backend == "torch":
                import torch

                value = getattr(module, name)(*(torch.from_numpy(a) for a in args)).numpy()
            elif backend == "jax":
                import jax

                with jax.enable_x64(True):                          # else JAX reads float64 as float32
                    value = np.asarray(jax.jit(getattr(module, name))(*(jax.numpy.asarray(a) for a in args)))
            else:
                value = getattr(module, name)(*args)
                value = value.compute() if backend == "dask" else value
            np.testing.assert_allclose(value, expected_value, rtol=1e-10, err_msg=f"{backend}.{name}")


def test_command_line_and_benchmarks_cover_the_table():
    kls = {name for name in FUNCTIONS if name.startswith("kl")}
    assert {function for _, function in cli.KL_PARAMETERISATIONS.values()} == kls
    assert set(cli.KL_ARRAYS) == {p for name in kls for p in FUNCTIONS[name].names}
    assert set(_bench.CASES) == set(FUNCTIONS) | {"kl_standard"}
    for case in _bench.CASES:
        args = _bench.random_inputs(case, 2, 3, 2)
        assert np.all(np.isfinite(getattr(fm, "kl" if case == "kl_standard" else case)(*args)))


def test_defined_function_binds_as_the_cpu_function():
    calls = []
    entry = FUNCTIONS["kl_chol"]
    public = _table.define(entry, lambda function, values, **keywords: calls.append((function, values, keywords)),
                           {"errors": "raise", "lower": True}, "doc", "somewhere")
    public(1, 2, 3, colchol2=6, lower=False)
    assert calls == [(entry, (1, 2, 3, None, None, 6), {"errors": "raise", "lower": False})]
    assert (public.__name__, public.__module__, public.__doc__) == ("kl_chol", "somewhere", "doc")
    with pytest.raises(TypeError, match="missing a required argument: 'colchol1'"):
        public(1, 2)
    with pytest.raises(TypeError, match="unexpected keyword argument 'stream'"):
        public(1, 2, 3, stream=0)


def module_imports(path, package):
    """The modules of the package that the module at ``path`` (named ``package``-relative)
    imports when it is imported: its top-level imports, those inside a top-level ``try`` or
    ``if`` included, those inside functions or under ``if TYPE_CHECKING:`` (for annotations) not."""
    name = ".".join(path.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__")
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    statements = list(ast.parse(path.read_text()).body)
    while statements:
        node = statements.pop()
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            statements += node.orelse
        elif isinstance(node, (ast.Try, ast.If)):
            statements += node.body + node.orelse + getattr(node, "finalbody", []) + \
                [s for handler in getattr(node, "handlers", []) for s in handler.body]
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
            target = f"{base}.{node.module}" if node.module else base
            found |= {f"{target}.{alias.name}" for alias in node.names} | {target}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return name, found


def test_no_import_cycle_inside_the_package():
    package = pathlib.Path(fm.__file__).parent
    paths = sorted(package.rglob("*.py"))
    graph = dict(module_imports(path, package) for path in paths)
    graph = {name: {t for t in targets if t in graph and t != name and not name.startswith(t + ".")
                    and t != "fastmvn"} for name, targets in graph.items()}
    visiting, done = [], set()

    def visit(name):
        assert name not in visiting, " → ".join(visiting[visiting.index(name):] + [name])
        if name in done:
            return
        visiting.append(name)
        for target in sorted(graph[name]):
            visit(target)
        visiting.pop()
        done.add(name)

    for name in graph:
        visit(name)
    assert "fastmvn._api" in graph and "fastmvn._table" in graph["fastmvn._api"]
