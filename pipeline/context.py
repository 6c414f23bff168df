"""What every verb is handed: settings, the seams, the output and the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from . import dockerignore, git
from .clients import Clients
from .config import Settings
from .output import Output


@dataclass
class Context:
    settings: Settings
    clients: Clients
    out: Output
    environ: Mapping[str, str] = field(repr=False)  # holds credentials: never in a repr
    # tag → the digest this run pushed (or found to be its own image): a deploy in the same
    # run refuses a tag that ECR has since moved to another digest.
    pushed: dict[str, str] = field(default_factory=dict)

    def for_job(self) -> Context:
        """The context a CI job builds and pushes images with: a -dev branch's job uses the
        dev repository (its role can write no other), every other one the project's."""
        from .ci_identity import dev_branch_job

        if self.settings.dev_images or not dev_branch_job(self.settings.ci, self.environ):
            return self
        self.out.detail(
            f"a -dev branch's job: its images go to {self.settings.dev_repository}, not {self.settings.repository}"
        )
        return self.with_dev_images()

    def with_dev_images(self) -> Context:
        """This context with the -dev branches' repository as where images are."""
        return replace(self, settings=self.settings.for_dev_images())

    def revision(self, sha: str | None = None) -> git.Revision:
        """The commit, and whether what goes into the image differs from it."""
        s = self.settings
        return git.current(
            s.root, self.environ, sha, dockerignore.in_image(s.root, s.service_dir, s.dockerfile)
        )
