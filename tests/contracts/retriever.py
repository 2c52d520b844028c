"""Contract of `Retriever` (tools/search/base.py): typed, best-first, at most `k`, filtered before the top k.

The properties: `retrieve` returns at most `k` `RetrievedChunk`s of rows of the retriever's table, each named by
the retriever, with finite positive scores in non-increasing order, the same list for the same query; the chunk
a query is about comes first; `SearchFilters` (tenant, ACL groups, source prefixes, metadata) are applied before
the top k, so a filter never leaks a row it does not admit (`SearchFilters.admits` is the oracle) and never
leaves the caller short while admitted matches remain; an empty or blank query, `k <= 0`, an unknown tenant and
an empty table give `[]`; a 10k-character query is answered in bounded time (it is clipped); a lexical
retriever gives `[]` for words it never indexed.

A backend runs it by subclassing `RetrieverContract` in a `test_*.py` file and providing:

    make_retriever   a callable: list of `Chunk`s -> a `Retriever` over a `ChunkTable` of exactly those rows.
    matches_any_text class attribute: True when every text scores against every row (dense similarity), so a
                     query of unknown words may still find something; False (the default) for lexical matching.
"""

from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np
import pytest

from chimera.tools.search.base import Retriever
from chimera.tools.search.types import DEFAULT_TENANT, Chunk, RetrievedChunk, SearchFilters

MakeRetriever = Callable[[list[Chunk]], Retriever]


def chunk(
    text: str,
    source: str,
    *,
    tenant: str = "acme",
    acl: tuple[str, ...] = (),
    metadata: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Chunk:
    return Chunk(
        id=Chunk.make_id(tenant, source, 0, text),
        doc_id=source,
        text=text,
        source=source,
        ordinal=0,
        content_hash="contract",
        heading_path=(title,) if title else (),
        tenant=tenant,
        acl=acl,
        metadata=MappingProxyType(dict(metadata or {})),
    )


HARVEST = "Vale Farm apple harvest"
# Tenant globex writes about the same harvest more densely than acme: over all rows its chunks outrank acme's,
# so a filter applied after the top k would leave acme with nothing.
HARVEST_A = chunk(
    "Vale Farm apple harvest: pickers filled 40 crates of Granny Smith apples in September.",
    "acme/farm/harvest.txt",
    metadata={"kind": "report"},
)
WEATHER_A = chunk(
    "Vale Farm weather log: the apple harvest paused for two days of rain.",
    "acme/farm/weather.txt",
    metadata={"kind": "log"},
)
PAYROLL_A = chunk(
    "Vale Farm payroll: apple pickers earn 31 euros per hour during the harvest.",
    "acme/hr/pay.txt",
    acl=("hr",),
    metadata={"kind": "report"},
)
CURIE_A = chunk(
    "Marie Curie discovered polonium and radium in Paris with Pierre Curie.",
    "acme/science/curie.txt",
    title="Marie Curie",
)
CABLE_A = chunk("The Orkney cable carries wind power from the turbines to Shetland.", "acme/energy/cable.txt")
GLOBEX = [
    chunk(
        f"Vale Farm apple harvest {i}: Vale Farm apple harvest at Vale Farm.",
        f"globex/farm-{i}.txt",
        tenant="globex",
        title="Vale Farm",
    )
    for i in range(5)
]
GLOBEX_HR = chunk(
    "Vale Farm apple harvest bonus for pickers at Vale Farm.",
    "globex/hr/bonus.txt",
    tenant="globex",
    acl=("hr", "finance"),
)
CURIE_GLOBEX = chunk(
    "Marie Curie polonium Paris: Marie Curie, polonium, Paris.",
    "globex/curie.txt",
    tenant="globex",
    title="Marie Curie",
)
DEFAULT = chunk("The Vale Farm apple harvest, as the default tenant tells it.", "harvest.txt", tenant=DEFAULT_TENANT)
CORPUS = [*GLOBEX, HARVEST_A, GLOBEX_HR, WEATHER_A, CURIE_GLOBEX, PAYROLL_A, CURIE_A, CABLE_A, DEFAULT]

FILTERS = {
    "default tenant": SearchFilters(),
    "acme": SearchFilters(tenant="acme"),
    "acme, no groups": SearchFilters(tenant="acme", acl=frozenset()),
    "acme, hr": SearchFilters(tenant="acme", acl=frozenset({"hr"})),
    "acme, finance": SearchFilters(tenant="acme", acl=frozenset({"finance"})),
    "globex": SearchFilters(tenant="globex"),
    "globex, finance": SearchFilters(tenant="globex", acl=frozenset({"finance"})),
    "acme farm folder": SearchFilters(tenant="acme", acl=frozenset({"hr"}), sources=("acme/farm/",)),
    "acme reports": SearchFilters(tenant="acme", acl=frozenset({"hr"}), metadata={"kind": "report"}),
    "nobody": SearchFilters(tenant="nobody", acl=frozenset({"hr", "finance"})),
}
# Each of the first three names an entity and shares words with its chunks: every kind of retriever finds them.
QUERIES = [
    HARVEST,
    "Marie Curie polonium Paris",
    "wind power from Orkney to Shetland",
    "How much do apple pickers earn per hour?",
    "Which tenant tells the harvest?",
    "Vale Farm bonus for pickers",
    *sorted({word for c in CORPUS for word in c.text.replace(":", " ").replace(",", " ").split()}),
]


def _check_results(retriever: Retriever, found: list[RetrievedChunk], k: int) -> None:
    assert len(found) <= k
    assert all(isinstance(r, RetrievedChunk) for r in found)
    assert {r.retriever for r in found} <= {retriever.name}
    rows = [retriever.table.row(r.id) for r in found]
    assert None not in rows and len(set(rows)) == len(rows), "each result is a distinct row of the table"
    assert all(retriever.table.chunks[row] == r.chunk for row, r in zip(rows, found, strict=True))
    scores = [r.score for r in found]
    assert all(np.isfinite(s) and s > 0 for s in scores)
    assert scores == sorted(scores, reverse=True)


class RetrieverContract:
    """Run against every `Retriever`; see the module docstring for what a subclass provides."""

    matches_any_text = False

    @pytest.fixture
    def retriever(self, make_retriever: MakeRetriever) -> Retriever:
        return make_retriever(list(CORPUS))

    @pytest.mark.parametrize("k", [1, 2, 3, 10, 100])
    def test_results_are_typed_best_first_and_at_most_k(self, retriever: Retriever, k: int) -> None:
        for query in QUERIES[:3]:
            found = retriever.retrieve(query, k, SearchFilters(tenant="acme", acl=frozenset({"hr"})))
            _check_results(retriever, found, k)
            assert found, query
            assert retriever.retrieve(query, k, SearchFilters(tenant="acme", acl=frozenset({"hr"}))) == found

    def test_the_chunk_a_query_is_about_comes_first(self, retriever: Retriever) -> None:
        assert retriever.retrieve("Marie Curie polonium Paris", 3, SearchFilters(tenant="acme"))[0].chunk == CURIE_A
        assert retriever.retrieve(HARVEST, 1, SearchFilters())[0].chunk == DEFAULT

    def test_filters_never_leak_a_row_they_do_not_admit(self, retriever: Retriever) -> None:
        for name, filters in FILTERS.items():
            admitted = {c.id for c in CORPUS if filters.admits(c)}
            seen: set[str] = set()
            for query in QUERIES:
                found = retriever.retrieve(query, 10, filters)
                _check_results(retriever, found, 10)
                assert {r.id for r in found} <= admitted, (name, query)
                seen |= {r.id for r in found}
            assert bool(seen) == bool(admitted), f"premise: the queries find what {name!r} admits"

    def test_filters_apply_before_the_top_k(self, retriever: Retriever) -> None:
        everything = retriever.scores(HARVEST, np.ones(len(retriever.table), dtype=bool))
        best_two = {retriever.table.chunks[r].tenant for r in np.argsort(-everything, kind="stable")[:2]}
        assert best_two == {"globex"}, "premise: over all rows, globex's chunks outrank acme's"

        def ids(k: int, **filters: object) -> set[str]:
            return {r.id for r in retriever.retrieve(HARVEST, k, SearchFilters(**filters))}  # type: ignore[arg-type]

        hr = frozenset({"hr"})
        assert ids(2, tenant="acme") == {HARVEST_A.id, WEATHER_A.id}
        assert ids(3, tenant="acme", acl=hr) == {HARVEST_A.id, WEATHER_A.id, PAYROLL_A.id}
        assert ids(5, tenant="acme", acl=hr, sources=("acme/farm/",)) == {HARVEST_A.id, WEATHER_A.id}
        assert ids(5, tenant="acme", acl=hr, metadata={"kind": "report"}) == {HARVEST_A.id, PAYROLL_A.id}

    def test_acl_tagged_rows_need_a_shared_group(self, retriever: Retriever) -> None:
        query = "Vale Farm payroll of apple pickers"
        for groups in (None, frozenset(), frozenset({"finance"})):
            found = retriever.retrieve(query, 10, SearchFilters(tenant="acme", acl=groups))
            assert PAYROLL_A.id not in {r.id for r in found}, groups
        assert PAYROLL_A.id in {r.id for r in retriever.retrieve(query, 10, SearchFilters("acme", frozenset({"hr"})))}
        found = retriever.retrieve("Vale Farm bonus for pickers", 10, SearchFilters("globex", frozenset({"finance"})))
        assert GLOBEX_HR.id in {r.id for r in found}

    @pytest.mark.parametrize("query", ["", "   \n\t "])
    def test_an_empty_query_finds_nothing(self, retriever: Retriever, query: str) -> None:
        assert retriever.retrieve(query, 5, SearchFilters(tenant="acme")) == []

    @pytest.mark.parametrize("k", [0, -1])
    def test_k_below_one_finds_nothing(self, retriever: Retriever, k: int) -> None:
        assert retriever.retrieve(HARVEST, k, SearchFilters(tenant="acme")) == []

    def test_an_unknown_tenant_and_an_empty_table_find_nothing(
        self, retriever: Retriever, make_retriever: MakeRetriever
    ) -> None:
        assert retriever.retrieve(HARVEST, 5, SearchFilters(tenant="nobody")) == []
        assert make_retriever([]).retrieve(HARVEST, 5) == []

    def test_a_10k_character_query_is_answered(self, retriever: Retriever) -> None:
        found = retriever.retrieve(("Where did Marie Curie discover polonium? " * 300)[:10_000], 5,
                                   SearchFilters(tenant="acme"))  # fmt: skip
        _check_results(retriever, found, 5)
        assert found and found[0].chunk == CURIE_A

    def test_words_never_indexed_find_nothing_unless_any_text_matches(self, retriever: Retriever) -> None:
        found = retriever.retrieve("Zyxquv Plonkwert", 5, SearchFilters(tenant="acme"))
        _check_results(retriever, found, 5)
        if not self.matches_any_text:
            assert found == []
