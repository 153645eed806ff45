"""`polingo review`: a local web page where translators accept, fix or reject drafts."""
