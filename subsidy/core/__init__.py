"""The domain and its pure rules: values, money, credit codes, the policy
loader, the eligibility rules and the ledger rules. Imports nothing of the layers above, and does no
I/O beyond reading the policy files."""
