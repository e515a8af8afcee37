//! The store contract suite against the memory store (the embedded store of
//! a single instance and of `session-gateway dev`).

use session_gateway_e2e::contract::memory_store_factory;

mod contract {
    session_gateway_e2e::store_contract_tests!(super::memory_store_factory);
}
