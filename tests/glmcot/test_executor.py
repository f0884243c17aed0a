import os

import pytest

from glmcot.executor import SnippetRefused, check, literal_retrievals


def test_valid_programs_run(executor):
    code = ('a = RetrieveNode("Ivo Brennan")\n'
            'c = Counter(x for p in NeighbourCheck(a, "paper") for x in NeighbourCheck(p, "author") if x != a)\n'
            'top = sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:1]\n'
            'print(NodeDegree(a, "paper"), [NodeFeature(x, "name") for x, n in top])')
    r = executor.run(code)
    assert r.ok and r.output.startswith("20 ['")
    assert executor.run("def f(n):\n    return n * 2\nprint({k: f(k) for k in range(3)})").output == "{0: 0, 1: 2, 2: 4}\n"


def test_graph_errors_come_back(executor):
    r = executor.run('print(NodeFeature("a0090", "citation"))')
    assert not r.ok and r.error.startswith("GraphError:") and "organization" in r.error


ESCAPES = {
    "import": "import os\nos.system('touch /tmp/pwned')",
    "from import": "from os import system",
    "open": "open('/tmp/glm_escape', 'w').write('x')",
    "dunder walk": "().__class__.__bases__[0].__subclasses__()",
    "format side door": "print('{0.__class__}'.format(1))",
    "exec": "exec('print(1)')",
    "eval": "eval('1+1')",
    "getattr": "getattr(1, 'real')",
    "frame attribute": "g = (i for i in [])\nprint(g.gi_frame)",
    "underscore name": "_x = 1",
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_escapes_refused_statically(name, executor, tmp_path):
    with pytest.raises(SnippetRefused):
        check(ESCAPES[name])
    r = executor.run(ESCAPES[name])
    assert not r.ok and r.error.startswith("Refused")
    assert not os.path.exists("/tmp/glm_escape") and not os.path.exists("/tmp/pwned")


def test_runaway_snippets_are_capped(executor):
    r = executor.run("while True:\n    pass")
    assert not r.ok and r.error.startswith("Timeout")
    r = executor.run("print('x' * 10**6)")
    assert not r.ok and r.error.startswith("OutputLimit") and len(r.output) <= 4000
    r = executor.run("x = [0] * (10**9)")
    assert not r.ok and r.error.startswith("MemoryError")
    r = executor.run("def f(n):\n    return f(n + 1)\nf(0)")
    assert not r.ok and "Recursion" in r.error
    assert executor.run("print(1)").output == "1\n"  # the worker came back after the timeout


def test_literal_retrievals_found_for_pipelining():
    tree = check('a = RetrieveNode("X")\nb = RetrieveNode(a)\nprint(RetrieveNode("Y"))')
    assert sorted(literal_retrievals(tree)) == ["X", "Y"]


def test_syntax_error_reported(executor):
    r = executor.run("print(")
    assert not r.ok and r.error.startswith("SyntaxError")
