rule cypher_write_or_procedure
{
    meta:
        description = "Cypher that writes, loads files or calls procedures: graph_query is read-only"

    strings:
        $write = /\b(CREATE|MERGE|DELETE|DETACH|SET|REMOVE|DROP)\s/ nocase
        $load = /\bLOAD\s+CSV\b/ nocase
        $call = /\bCALL\s+(dbms|db|apoc|gds)\./ nocase
        $apoc = /\bapoc\.(load|export|cypher|periodic|trigger)/ nocase

    condition:
        any of them
}
