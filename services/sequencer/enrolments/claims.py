"""Dividing the due step runs between the sweeps of several workers.

Every worker's sweep lists the earliest due step runs, so without claims two workers list the same
ones. Both then ask the contacts service for the contacts' consent, and one finds every row locked
or already sending. That worker's sweep ends there, so a second worker sent almost nothing that a
sweep found.

A sweep therefore claims each listed step run in Redis (`SET NX` with an expiry) and runs only the
ones it got. The claims only divide the work: the row locks in `batch` and `runner` still keep two
workers from running one step. So when Redis fails, the sweep runs what it listed, as before. A
claim is deleted when its batch ends. A worker that dies leaves its claims until they expire,
after `CLAIM_TTL_MS`, and then another sweep takes those steps.
"""

from collections.abc import Sequence

from services.kit.logging import get_logger
from services.sequencer.enrolments.runtime import Runtime

# Long enough for a batch to claim, render and send its emails. Longer only delays the steps of a
# worker that died.
CLAIM_TTL_MS = 60_000

log = get_logger(__name__)


def claim_key(namespace: str, step_run_id: int) -> str:
    return f"{namespace}:sequencer:sweep-claim:{step_run_id}"


async def claim(runtime: Runtime, step_run_ids: Sequence[int]) -> list[int]:
    """Claim step runs for this worker's sweep, and return the ones that no other sweep holds."""
    if runtime.redis is None or not step_run_ids:
        return list(step_run_ids)

    namespace = runtime.settings.namespace
    try:
        async with runtime.redis.pipeline(transaction=False) as pipe:
            for step_run_id in step_run_ids:
                pipe.set(claim_key(namespace, step_run_id), runtime.worker_id, nx=True, px=CLAIM_TTL_MS)
            replies = await pipe.execute()
    except Exception as error:  # noqa: BLE001 - the row locks still guard each step, so the sweep goes on unclaimed
        log.warning("sweep.claim_failed", step_runs=len(step_run_ids), error=repr(error))
        return list(step_run_ids)
    return [step_run_id for step_run_id, claimed in zip(step_run_ids, replies, strict=True) if claimed]


# Deletes each key whose value is still this worker's id. A batch that outlived its claims may find
# a key that another worker claimed since, which must stay.
_RELEASE_OWN = """
local released = 0
for index, key in ipairs(KEYS) do
    if redis.call('GET', key) == ARGV[1] then
        released = released + redis.call('DEL', key)
    end
end
return released
"""


async def release(runtime: Runtime, step_run_ids: Sequence[int]) -> None:
    """Delete this sweep's claims once their batch has ended, so a step still due can be listed again at once."""
    if runtime.redis is None or not step_run_ids:
        return

    namespace = runtime.settings.namespace
    keys = [claim_key(namespace, step_run_id) for step_run_id in step_run_ids]
    try:
        await runtime.redis.eval(_RELEASE_OWN, len(keys), *keys, runtime.worker_id)
    except Exception as error:  # noqa: BLE001 - the claims expire by themselves
        log.warning("sweep.release_failed", step_runs=len(step_run_ids), error=repr(error))
