"""Messages of the core server that people see, listed so that they are extracted into the catalogues
(the core raises them as plain English strings; error responses translate them by exact match)."""

from __future__ import annotations

from paigham.messages import N_

MESSAGES = [
    N_("Invalid username or password"),
    N_("Missing access token"),
    N_("Unknown access token"),
    N_("Access token has expired"),
    N_("Account is deactivated"),
    N_("This account has been locked"),
    N_("This account has been locked by an administrator"),
    N_("Unknown room"),
    N_("You are not a member of this room"),
    N_("User ID already taken"),
    N_("Registration token is no longer valid"),
    N_("You cannot change another user's profile"),
    N_("Password must be 1 to 512 characters"),
    N_("Request body is empty; a JSON object is required"),
    N_("The request body must be a JSON object"),
    N_("Unrecognized request"),
    N_("Internal server error"),
]
