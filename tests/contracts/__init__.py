"""Contract suites: one per swappable interface, run against every implementation (STYLE.md item 9).

Each module holds a plain mixin class (`LLMEngineContract`, `RetrieverContract`, `RailsContract`,
`LongMemoryContract`, `SessionStoreContract`) whose `test_*` methods use fixtures the subclass provides; its
docstring says which. A backend runs the suite by subclassing the mixin as `class Test<Backend>(...Contract)` in a
`test_*.py` file of its tier (tests/unit when it needs no Ray and no engine, else tests/integration). The mixins'
names lack the `Test` prefix and their modules lack the `test_` prefix, so pytest never collects them on their own.
A new backend passes its interface's suite or is not done.
"""
