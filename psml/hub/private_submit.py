"""nbgrader's submit step, with submissions other students cannot read.

nbgrader's default submit makes a student's copy in the exchange's ``inbound/`` readable by
everyone (mode 0644 files, 0777 folder), hidden only by a random folder name in a folder
students cannot list. On the hub the inbound folder belongs to the instructors' group
(setgid, :func:`psml.hub.exchange.release`), so a submission can be private to its author
and the instructors: the top folder is 0770 with the instructors' group, so nobody else can
enter it; the folders below are 0750, and the files keep nbgrader's 0644.

Why the files stay 0644: nbgrader writes ``timestamp.txt`` and ``submission_secret.txt`` after
its copy has reset the folder's setgid bit, so those two files get the student's own group,
and a student cannot give a file to a group they are not in. Files readable only by their
group would therefore be unreadable for the instructor, and the Formgrader's *Collect* (run
as the instructor's uid) would fail on them.
Students' servers use it through ``c.ExchangeFactory.submit`` (their nbgrader_config.py).
"""

from __future__ import annotations

import os

from nbgrader.exchange.default.submit import ExchangeSubmit


class PrivateSubmit(ExchangeSubmit):
    def set_perms(self, dest, fileperms, dirperms):
        super().set_perms(dest, fileperms, dirperms & ~0o007)

    def copy_files(self):
        super().copy_files()
        os.chmod(os.path.join(self.inbound_path, self.assignment_filename), 0o770)
