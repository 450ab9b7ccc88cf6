"""Stable error codes of the contract layer and the one internal rejection.

Theory of operation
-------------------
Three kinds of failure are kept apart in contracts/:

* a transaction that is malformed or breaks a rule is *rejected*: the code
  that finds the problem raises :class:`Rejected` with an :class:`ErrorCode`
  and a message naming the failing link, and :func:`contracts.runtime.execute`
  turns it into a rejected receipt.  ``Rejected`` never leaves ``execute`` or
  ``query``;
* a caller misusing the Python API (wrong types, a state without genesis)
  gets an ordinary ``TypeError`` or ``ValueError`` at once;
* a broken invariant of our own data is an ``assert``.

The codes are part of the public interface: clients, the SDK and tests match
on them, so a code is never renamed or reused for another meaning.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Why a transaction or a query was refused.  Values are wire-stable."""

    # Admission: the envelope itself is not acceptable.  These never consume
    # the sender's nonce and never change state.
    TOO_LARGE = "too_large"
    WRONG_CHAIN = "wrong_chain"
    EXPIRED = "expired"
    UNKNOWN_KEY = "unknown_key"
    KEY_REVOKED = "key_revoked"
    BAD_NONCE = "bad_nonce"
    BAD_SIGNATURE = "bad_signature"

    # Dispatch and arguments.
    UNKNOWN_CONTRACT = "unknown_contract"
    UNKNOWN_METHOD = "unknown_method"
    INVALID_ARGUMENT = "invalid_argument"
    BUDGET_EXCEEDED = "budget_exceeded"
    LIMIT_EXCEEDED = "limit_exceeded"

    # Shared rules.
    UNAUTHORIZED = "unauthorized"
    DUPLICATE = "duplicate"
    UNKNOWN_ORG = "unknown_org"
    SANCTIONED = "sanctioned"

    # Governance.
    UNKNOWN_PROPOSAL = "unknown_proposal"
    PROPOSAL_CLOSED = "proposal_closed"
    ALREADY_VOTED = "already_voted"
    UNKNOWN_VALIDATOR = "unknown_validator"
    VALIDATOR_SET_TOO_SMALL = "validator_set_too_small"
    VALIDATORS_NOT_GOVERNED = "validators_not_governed"

    # Assets, custody and the provenance DAG.
    UNKNOWN_ASSET = "unknown_asset"
    NOT_OWNER = "not_owner"
    NOT_AVAILABLE = "not_available"
    FROZEN = "frozen"
    MASS_BALANCE = "mass_balance"

    # Diamond pack.
    UNKNOWN_MINE = "unknown_mine"
    MINE_NOT_ACCREDITED = "mine_not_accredited"
    NOT_KP_PARTICIPANT = "not_kp_participant"
    NO_KP_CERTIFICATE = "no_kp_certificate"
    UNKNOWN_CERTIFICATE = "unknown_certificate"
    EXPIRED_CERTIFICATE = "expired_certificate"
    REVOKED_CERTIFICATE = "revoked_certificate"
    CERTIFICATE_USED = "certificate_used"
    WRONG_LOCATION = "wrong_location"
    CARATS_MISMATCH = "carats_mismatch"
    YIELD_EXCEEDED = "yield_exceeded"
    NOT_ROUGH = "not_rough"
    NOT_POLISHED = "not_polished"
    NOT_GRADED = "not_graded"
    NOT_CONFLICT_FREE = "not_conflict_free"

    # Food pack.
    RECALLED = "recalled"
    MISSING_CERTIFICATE = "missing_certificate"

    # Queries.
    UNKNOWN_QUERY = "unknown_query"


class Rejected(Exception):
    """A rule refused the transaction or query; carries a stable code.

    Only contract code raises this, and only ``execute``, ``query`` and
    ``contracts.admission.check_stateless`` (which returns it to the node)
    catch it: it is how a rule deep in a handler aborts the whole
    transaction without writing anything.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
