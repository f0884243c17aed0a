"""Pipelining: RetrieveNode searches start while the snippet streams; same answers, sooner."""
import time

from glmcot.drivers import Completion, OracleDriver
from glmcot.glm import GLM
from glmcot.pipeline import RetrievalPipeline


class StreamingBackend:
    """A test double that 'decodes' the oracle's completion in slow chunks, streaming the text."""

    model_name = "stream"

    def force(self, messages, completion, spans=None, on_text=None):
        t0 = time.perf_counter()
        for i in range(0, len(completion), 12):
            time.sleep(0.01)
            if on_text is not None:
                on_text(completion[:i + 12])
        return Completion(completion, 1, len(completion) // 4, time.perf_counter() - t0)


def test_pipeline_unit(retriever):
    pipe = RetrievalPipeline(retriever, delay_s=0.05)
    pipe.on_text('a = RetrieveNode("Ivo Brennan")\nb = RetrieveNode("Ivo Bre')
    time.sleep(0.1)
    assert pipe.resolve('a = RetrieveNode("Ivo Brennan")') == {"Ivo Brennan": "a0090"}
    assert pipe.hidden_share > 0.5
    off = RetrievalPipeline(retriever, delay_s=0.05, enabled=False)
    off.on_text('RetrieveNode("Ivo Brennan")')
    assert off.resolve('RetrieveNode("Ivo Brennan")') == {"Ivo Brennan": "a0090"} and off.hidden_share == 0.0


def test_same_answers_sooner(graph, executor, retriever, dev):
    recs = [r for r in dev if r["template"] in ("wrote_both", "recommend_by_coupling")][:2]
    driver = OracleDriver(StreamingBackend())
    out = {}
    for pipeline in (False, True):
        glm = GLM(graph, executor, retrieve=retriever, pipeline=pipeline, retrieval_delay_s=0.1)
        t0 = time.perf_counter()
        results = [glm.run(r, driver.session(r, "glm"), "oracle", "stream") for r in recs]
        out[pipeline] = ([r.answer for r in results], time.perf_counter() - t0,
                         sum(r.retrieval_wait_s for r in results), sum(r.retrieval_s for r in results))
    assert out[True][0] == out[False][0] and all(out[True][0])
    assert out[True][1] < out[False][1]
    assert out[True][2] < 0.5 * out[True][3]  # most search time hidden behind decoding
