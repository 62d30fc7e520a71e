"""The lock file kept up to date as steps succeed, without blocking the steps that follow."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.store.lockfile import (
    LOCK_VERSION,
    LockEntry,
    join_blocks,
    render_entry,
    write_text,
)

if TYPE_CHECKING:
    import asyncio

    from orchestrator.engine.state import Workspace


class LockWriter:
    """Writes the lock file after each recorded step.

    Each step's block is rendered once; a write joins the blocks. Inside the event loop, writes
    run in a thread and coalesce when they pile up, and `written` waits until an entry is on
    disk; outside it (a build that only verifies and restores), one write at the end does. A
    waiter that is cancelled never cancels the write it waits for.
    """

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.in_loop = False
        self._blocks: dict[str, str] | None = None
        self._recorded = 0
        self._written = 0
        self._task: asyncio.Task[None] | None = None

    def record(self, step_id: str, entry: LockEntry) -> int:
        """Remember a step's entry and get it onto disk soon; the number to wait for."""
        self.workspace.entries[step_id] = entry
        self._render()[step_id] = render_entry(step_id, entry)
        self._recorded += 1
        if self.in_loop and (self._task is None or self._task.done()):
            import asyncio

            self._task = asyncio.ensure_future(self._drain())
        return self._recorded

    async def written(self, number: int) -> None:
        """Wait until the entry `record` numbered is on disk."""
        import asyncio

        while self._written < number and self._task is not None:
            await asyncio.shield(self._task)

    def _render(self) -> dict[str, str]:
        if self._blocks is None:
            known = self.workspace.plan.steps
            self._blocks = {
                name: render_entry(name, entry)
                for name, entry in self.workspace.entries.items()
                if name in known and entry.version == LOCK_VERSION
            }
        return self._blocks

    async def _drain(self) -> None:
        import asyncio

        while self._written < self._recorded:
            number, text = self._recorded, join_blocks(self._render())
            await asyncio.to_thread(write_text, self.workspace.lock_file, text)
            self._written = number

    async def flush(self) -> None:
        """Wait until every recorded entry is written."""
        await self.written(self._recorded)

    def write_pending(self) -> None:
        """Write now if anything recorded is not on disk yet."""
        if self._written < self._recorded:
            write_text(self.workspace.lock_file, join_blocks(self._render()))
            self._written = self._recorded
