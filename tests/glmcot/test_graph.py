import json

import pytest

from glmcot.graph import Graph, infer_schema
from papersuite.errors import UserError


def test_observation_strings(graph, retriever):
    assert graph.observe("RetrieveNode", ["Ivo Brennan"], retriever) == "The ID of this retrieval target node is a0090."
    assert graph.observe("NodeFeature", ["a0090", "organization"]) == \
        "The organization feature of a0090 are: Stonegate University."
    assert graph.observe("NeighbourCheck", ["p00560", "author"]) == \
        "The author neighbors of p00560 are: ['a0095', 'a0112', 'a0282']."
    assert graph.observe("NodeDegree", ["a0090", "paper"]) == "The paper neighbor node degree of a0090 are: 20."
    assert graph.observe("Bogus", ["x"]).startswith("Invalid Action. Valid Actions are")
    assert graph.observe("NodeFeature", ["zz", "name"]) == "There is no node with id 'zz'."


def test_raw_api_and_vertex_chunk(graph):
    assert graph.feature("p00560", "year") == 2011
    assert graph.neighbours("p00560", "venue") == ["v08"]
    chunk = graph.node_info("a0090", k=2)
    assert chunk.startswith("[a0090 author] name: Ivo Brennan; organization: Stonegate University")
    assert "paper (20):" in chunk and "(+18 more)" in chunk
    assert chunk == graph.node_info("a0090", k=2)  # canonical


def test_schema_inferred_when_absent():
    raw = {"book_nodes": {"b1": {"features": {"title": "Dune", "year": 1965}, "neighbors": {"author": ["w1"]}}},
           "writer_nodes": {"w1": {"features": {"name": "Frank Herbert"}, "neighbors": {"book": ["b1"]}}}}
    g = Graph.from_dict(raw)
    assert g.schema.node_types["book"]["features"] == {"title": "str", "year": "int"}
    assert g.schema.node_text_keys == {"book": ["title"], "writer": ["name"]}
    assert "2 types of nodes" in g.schema.graph_definition
    assert infer_schema({"x": {}}).node_types == {"x": {"features": {}, "neighbors": {}}}
    assert g.dangling() == (0, [])


@pytest.mark.parametrize("content,needle", [
    ("{not json", "malformed JSON"),
    (json.dumps({"a_nodes": {"x": {"features": {}, "neighbors": {}}},
                 "b_nodes": {"x": {"features": {}, "neighbors": {}}}}), "node 'x' (b_nodes): id also used"),
    (json.dumps({"a_nodes": {"x": {"features": []}}}), "node 'x' (a_nodes): malformed node"),
    (json.dumps({"a_nodes": {"x": {"features": {}, "neighbors": {"b": "y"}}}}), "neighbors['b'] must be a list"),
    (json.dumps({"papers": {}}), "not a '<type>_nodes' object"),
])
def test_bad_graphs_name_file_and_node(tmp_path, content, needle):
    p = tmp_path / "g.json"
    p.write_text(content)
    with pytest.raises(UserError) as e:
        Graph.load(p)
    assert needle in str(e.value) and str(p) in str(e.value)


def test_dangling_counted(tmp_path):
    p = tmp_path / "g.json"
    p.write_text(json.dumps({"a_nodes": {"x": {"features": {"n": "X"}, "neighbors": {"b": ["y", "z"]}}}}))
    count, ex = Graph.load(p).dangling()
    assert count == 2 and ex[0] == {"node": "x", "neighbor_type": "b", "missing": "y"}
