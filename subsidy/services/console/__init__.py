"""The staff console (issue 15, docs/console.md): server-rendered pages in
Chinese for reviewers, finance, operators, the portal and firms, calling the
review, intake and payout services over gRPC as the signed-in person. It
keeps no data of its own beyond the session cookie."""
