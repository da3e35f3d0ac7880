"""The contract on the wire: the JSON codec of contract.md, the protobuf
codec, CloudEvents headers, the topic names, and the calculator (the rules and
the ledger over the contract's JSON). Depends on subsidy.core and
the generated subsidy.v1 only."""
