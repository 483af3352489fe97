"""nbgrader's submit step, with submissions other students cannot read.

nbgrader's default submit makes a student's copy in the exchange's ``inbound/`` readable by
everyone (mode 0644 files, 0777 folder), hidden only by a random folder name in a folder
students cannot list. On the hub the inbound folder belongs to the instructors' group
(setgid, :func:`psml.hub.exchange.release`), so a submission can be private to its author
and the instructors: files 0640, folders 0750, the top folder 2770 (instructors may delete).
Students' servers use it through ``c.ExchangeFactory.submit`` (their nbgrader_config.py).
"""

from __future__ import annotations

import os

from nbgrader.exchange.default.submit import ExchangeSubmit


class PrivateSubmit(ExchangeSubmit):
    def set_perms(self, dest, fileperms, dirperms):
        super().set_perms(dest, fileperms & ~0o007, dirperms & ~0o007)

    def copy_files(self):
        super().copy_files()
        os.chmod(os.path.join(self.inbound_path, self.assignment_filename), 0o2770)
