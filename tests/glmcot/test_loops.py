"""Both loops under a scripted TextGenerator: call counts, halts, context isolation, repair."""
import json

from glmcot.drivers import LiveDriver
from glmcot.glm import GLM, answer_from_output, parse_label, parse_reason
from glmcot.graphcot import GraphCoT

Q = {"qid": "t1", "question": 'Who are the authors of the paper "Efficient Control-Flow Integrity for Supply-Chain Security"?'}
TITLE = "Efficient Control-Flow Integrity for Supply-Chain Security"


def _graphcot(graph, retriever, **kw):
    return GraphCoT(graph, retriever, lambda msgs: len(msgs[-1]["content"]) // 4, fewshots=None, **kw)


def test_graphcot_two_calls_per_step_and_finish(graph, retriever, scripted):
    gen = scripted(["I need the paper.", f"RetrieveNode[{TITLE}]",
                    "Now its authors.", "NeighbourCheck[p00560, author]",
                    "Names.", "NodeFeature[a0095, name], NodeFeature[a0112, name], NodeFeature[a0282, name]",
                    "Done.", "Finish[Viktor Gallagher, Viktor Ueda, Zoltan Fischer]"])
    res = _graphcot(graph, retriever).run(Q, LiveDriver(gen))
    assert res.answer == "Viktor Gallagher, Viktor Ueda, Zoltan Fischer"
    assert res.steps == 4 and res.calls == 2 * res.steps and res.halt is None
    last = gen.prompts[-1][-1]["content"]  # the whole scratchpad is re-sent
    assert "Observation 1: The ID of this retrieval target node is p00560." in last
    assert last.count("Observation 3:") == 3 and last.endswith("Action 4:")
    assert gen.prompts[0][0] == {"role": "system", "content": "You are a helpful AI bot."}


def test_graphcot_step_halt_and_invalid_actions(graph, retriever, scripted):
    gen = scripted(["hmm", "no action here"] * 3)
    res = _graphcot(graph, retriever, max_steps=3).run(Q, LiveDriver(gen))
    assert res.halt == "steps" and res.calls == 6 and res.parse_errors == 3 and res.answer == ""
    assert "Invalid Action. Valid Actions are" in gen.prompts[-1][-1]["content"]


def test_graphcot_token_halt(graph, retriever, scripted):
    gen = scripted(["look", "NeighbourCheck[a0090, paper]"] * 10)
    res = _graphcot(graph, retriever, max_prompt_tokens=400).run(Q, LiveDriver(gen))
    assert res.halt == "tokens" and res.steps < 10 and res.calls == 2 * res.steps


def _glm(graph, executor, **kw):
    return GLM(graph, executor, **kw)


def test_glm_deterministic_takes_two_calls(graph, executor, scripted):
    code = f'print(", ".join(sorted(NodeFeature(x, "name") for x in NeighbourCheck(RetrieveNode("{TITLE}"), "author"))))'
    gen = scripted(["deterministic", code])
    res = _glm(graph, executor).run(Q, LiveDriver(gen))
    assert res.calls == 2 and res.cls == "deterministic"
    assert res.answer == "Viktor Gallagher, Viktor Ueda, Zoltan Fischer"


def test_glm_loop_and_agent_isolation(graph, executor, scripted):
    missing = "The co-author who wrote the most papers with Ivo Brennan."
    code = ('a = RetrieveNode("Ivo Brennan")\n'
            'c = Counter(x for p in NeighbourCheck(a, "paper") for x in NeighbourCheck(p, "author") if x != a)\n'
            'print("closest collaborator:", NodeFeature(c.most_common(1)[0][0], "name"))')
    gen = scripted(["non-deterministic", json.dumps({"missing": missing}), code, json.dumps({"answer": "X Y"})])
    q = {"qid": "t2", "question": "Who is the closest collaborator of author Ivo Brennan?"}
    res = _glm(graph, executor).run(q, LiveDriver(gen))
    assert res.answer == "X Y" and res.calls == 4 and res.steps == 2
    c_prompt, r1, a_prompt, r2 = (p[-1]["content"] for p in gen.prompts)
    assert "Notebook:\n(empty)" in r1
    assert "closest collaborator:" in r2 and "Notebook:\n- closest collaborator:" in r2
    assert missing in a_prompt and "Notebook" not in a_prompt and q["question"] not in a_prompt
    assert "Notebook" not in c_prompt and "closest collaborator:" not in c_prompt
    assert "Counter(" not in r2  # the R-Agent never sees code


def test_glm_exec_error_triggers_repair(graph, executor, scripted):
    bad = 'print(NodeFeature(RetrieveNode("Ivo Brennan"), "affiliation"))'
    good = 'print(NodeFeature(RetrieveNode("Ivo Brennan"), "organization"))'
    gen = scripted(["deterministic", bad, good])
    q = {"qid": "t3", "question": "What organization is researcher Ivo Brennan affiliated with?"}
    res = _glm(graph, executor).run(q, LiveDriver(gen))
    assert res.answer == "Stonegate University" and res.exec_errors == 1 and res.repairs == 1 and res.calls == 3
    repair_prompt = gen.prompts[2][-1]["content"]
    assert bad in repair_prompt and "GraphError" in repair_prompt


def test_glm_iteration_limit_forces_an_answer(graph, executor, scripted):
    gen = scripted(["non-deterministic"] + [json.dumps({"missing": "x"}), 'print("fact: 1")'] * 2
                   + [json.dumps({"answer": "1"})])
    res = _glm(graph, executor, max_iterations=2).run({"qid": "t4", "question": "q?"}, LiveDriver(gen))
    assert res.answer == "1" and res.calls == 6 and "Reply with {\"answer\": ...} now." in gen.prompts[-1][-1]["content"]


def test_parsers():
    assert parse_label("Non-deterministic") == "non-deterministic"
    assert parse_label(" deterministic") == "deterministic" and parse_label("maybe") is None
    assert parse_reason('sure: {"answer": "A, B"}') == ("answer", "A, B")
    assert parse_reason('{"missing": "x"}') == ("missing", "x") and parse_reason("{bad") is None
    assert answer_from_output("['b', 'a']\n") == "b, a" and answer_from_output("x\ny\n") == "x, y"
