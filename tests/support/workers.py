"""Running a service's real arq worker inside the test process until its queue is empty."""

from arq.worker import Worker, create_worker

from services.cli import services as registry


async def drain_queue(service: str) -> Worker:
    """Run the service's worker in burst mode: it takes every queued job, then stops."""
    worker = create_worker(registry.worker_settings(service), burst=True, poll_delay=0.01, handle_signals=False)
    try:
        await worker.main()
    finally:
        await worker.close()
    return worker
