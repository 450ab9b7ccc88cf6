"""Provenet's deterministic contract layer.

Theory of operation
-------------------
Every node executes the same ordered transactions through this package and
reaches byte-identical state.  The public surface:

* :mod:`contracts.tx`: the signed transaction envelope (``sign_tx``,
  ``verify_tx``, ``encode_tx``, ``decode_tx``, ``tx_id``);
* :mod:`contracts.runtime`: ``execute(state, tx, block) -> Receipt``;
* :mod:`contracts.admission`: ``check_stateless(tx, limits)``, the
  checks a node runs before ordering a transaction, taken from
  :mod:`contracts.methods`, the table of every method's stateless parse
  function and its handler;
* :mod:`contracts.queries`: ``query(state, contract, name, args) -> dict``;
* :mod:`contracts.state` and :mod:`contracts.stateroot`: the state
  interface, the in-memory state and the state root (``MerkleTrie``);
* :mod:`contracts.genesis`: ``Genesis`` and ``genesis_state``;
* :mod:`contracts.errors`: the stable error codes.

The rule packs are the contracts ``membership`` (governance),
``diamonds`` (Kimberley Process) and ``food`` (EPCIS-style recall).  The
package imports nothing but the standard library's pure modules and
``consensus.codec``; tests/contracts/test_contracts_purity.py enforces it.
"""
