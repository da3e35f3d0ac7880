"""The review and public-notice workflow as pure rules
(../shared/policy/workflow.md "Review" and "Public notice (公示)").

- ``calendar``: working days (工作日) from the maintained ``chinesecalendar``
  package: the notice period, the review deadline;
- ``settings``: the workflow's numbers as dated policy data
  (``policy/workflow.yaml``);
- ``review``: which decisions need review and why, a review item's state
  machine (claim, decide, four-eyes, more information), the reviewed decision
  an approval or a rejection becomes;
- ``notice``: a notice list's lines and their objections, when a line becomes
  payable or is withdrawn.

Pure: no clock (every rule takes the day or instant it is asked about), no
I/O beyond reading the settings file.
"""
