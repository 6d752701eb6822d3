"""The domain: pure rules and parsers, with no database, broker, SMTP or web framework (an import contract
keeps it so). Tokens, reference data, list parsing, event files, reminder rules, the retry policy, the
evidence rule for answers, and the authentication of a reply's sender."""
