"""The lock file kept up to date as steps succeed, without blocking the steps that follow."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.store.journal import Journal, journal_path
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
    """Journals each recorded step's entry, and writes the lock file once at the end.

    Each step's block is rendered once. Inside the event loop, the blocks recorded since the
    last append go to the lock journal (`store.journal`) in one append and one `fdatasync`,
    in a thread, so that steps finished together share a write; `written` waits until an entry
    is on disk. `write_pending`, when the build ends or is cancelled, writes the lock file
    from every block (atomically and durably) and only then removes the journal; outside the
    loop (a build that only verifies and restores) that one write is all. A journal left by a
    killed build is read with the lock (`lockfile.read_lock`), so its entries are among the
    workspace's: it is folded into the lock file before the first append starts a new one.
    A waiter that is cancelled never cancels the write it waits for.
    """

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.in_loop = False
        self._blocks: dict[str, str] | None = None
        self._pending: list[str] = []
        self._recorded = 0
        self._written = 0
        self._journal = Journal(journal_path(workspace.lock_file))
        self._leftover = self._journal.path.exists()
        """A killed build's journal: fold it into the lock file before journaling, and at
        the end even if no step ran."""
        self._task: asyncio.Task[None] | None = None

    def record(self, step_id: str, entry: LockEntry) -> int:
        """Remember a step's entry and get it onto disk soon; the number to wait for."""
        self.workspace.entries[step_id] = entry
        block = render_entry(step_id, entry)
        self._render()[step_id] = block
        self._pending.append(block)
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
            if self._leftover:
                number, text = self._recorded, join_blocks(self._render())
                self._pending.clear()
                await asyncio.to_thread(self._fold, text)
            else:
                number, text = self._recorded, "".join(self._pending)
                self._pending.clear()
                await asyncio.to_thread(self._journal.append, text)
            self._written = number

    def _fold(self, text: str) -> None:
        """Write the lock file with the leftover journal's entries, then drop the journal."""
        write_text(self.workspace.lock_file, text)
        self._journal.remove()
        self._leftover = False

    async def flush(self) -> None:
        """Wait until every recorded entry is on disk."""
        await self.written(self._recorded)

    def write_pending(self) -> None:
        """Write the lock file if an entry is not in it yet (recorded, or journaled), then
        remove the journal."""
        if self._recorded or self._leftover:
            self._fold(join_blocks(self._render()))
            self._written = self._recorded
