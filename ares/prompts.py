"""The embedded prompt set: instruction templates x topics, with widely spread natural lengths.

A length predictor is only worth training when outputs vary: "yes or no" answers end after a
few tokens, "a detailed essay" runs to the cap. Templates span that range; topics add variety.
"""
from __future__ import annotations

import random

TEMPLATES = (
    "Answer yes or no: is {topic} older than the printing press?",
    "In one word, what field does {topic} belong to?",
    "In one sentence, what is {topic}?",
    "Give a short definition of {topic}.",
    "List 3 facts about {topic}.",
    "List 10 facts about {topic}, one per line.",
    "Explain {topic} to a ten-year-old in a short paragraph.",
    "Write a detailed essay about {topic}, with an introduction, three sections and a conclusion.",
    "Write a step-by-step tutorial that teaches {topic} to a beginner.",
    "Compare {topic} with a related idea in a table with four rows.",
    "Write a haiku about {topic}.",
    "Write a long story in which {topic} plays a central role.",
    "What are the pros and cons of {topic}? Answer in two bullet lists.",
    "Summarise the history of {topic} in about 200 words.",
)
TOPICS = (
    "photosynthesis", "the French Revolution", "black holes", "the stock market", "vaccines",
    "machine learning", "the Roman Empire", "volcanoes", "the internet", "climate change",
    "jazz music", "the human heart", "quantum computing", "chess", "the Moon landing",
    "bees", "democracy", "plate tectonics", "coffee", "the printing press", "electric cars",
    "the immune system", "origami", "the Silk Road", "renewable energy", "sleep", "DNA",
    "the Olympic Games", "rainforests", "cryptography", "the piano", "antibiotics",
    "glaciers", "the Renaissance", "bridges", "recycling", "octopuses", "inflation",
    "the solar system", "compilers", "tea ceremonies", "tides", "the Great Wall of China",
    "submarines", "the violin", "earthquakes", "honey", "the Amazon river", "airplanes", "mathematics",
    "the Egyptian pyramids", "penguins", "solar panels", "the Cold War", "bread baking", "lighthouses",
    "the human brain", "hurricanes", "the Moon", "rivers", "clocks", "the telescope", "coral reefs",
    "libraries", "windmills", "the Vikings", "mushrooms", "deserts", "the printing of money", "trains",
    "snowflakes", "the alphabet", "castles", "wolves", "the microscope", "batteries", "salt", "maps",
    "the Industrial Revolution", "elephants", "rainbows", "skyscrapers", "the steam engine", "sharks",
    "photography", "marathons", "the periodic table", "jellyfish", "operating systems", "poetry",
    "the ancient Greeks", "whales", "glass making", "the Sahara", "bicycles", "origami cranes",
    "the Aztecs", "nuclear power", "ballet", "the water cycle", "spiders", "the theory of evolution",
    "radio", "cheese", "the Himalayas", "sailing", "the Byzantine Empire", "weather forecasting",
    "robots", "the blues", "fossils", "chocolate", "satellites", "the Mongol Empire", "gardening",
    "the heart of a star", "typewriters", "owls", "the Panama Canal", "board games", "magnets",
    "the human skeleton", "calendars", "the Olympics of ancient Greece", "kites", "lightning",
    "the Great Barrier Reef", "democracy in Athens", "paper", "rockets", "tornadoes", "the cello",
    "money", "the Arctic", "ants", "vaccination campaigns", "the Silk Road cities", "databases",
    "the Renaissance painters", "tigers", "fire", "the metric system", "wind energy", "sculpture",
)


def prompt_set(n: int, seed: int = 0) -> list[str]:
    """`n` distinct chat prompts, seeded; templates cycle so every length regime is covered."""
    rng = random.Random(seed)
    pairs = [(t, p) for t in TEMPLATES for p in TOPICS]
    rng.shuffle(pairs)
    if n > len(pairs):
        raise ValueError(f"the embedded set has {len(pairs)} prompts; asked for {n}")
    # interleave templates so any prefix of the list spans all of them
    by_template: dict[str, list[str]] = {}
    for t, p in pairs:
        by_template.setdefault(t, []).append(t.format(topic=p))
    order = list(by_template)
    rng.shuffle(order)
    out: list[str] = []
    while len(out) < n:
        for t in order:
            if by_template[t] and len(out) < n:
                out.append(by_template[t].pop())
    return out
