# Sidelight narrator, English: the transparency notice a route publishes
# (`GET /v1/notice/{route}`) and the answers to a customer's contest of a decision.
# A business may reword any of these in its own files; a route's own title and purpose
# are `custom-notice-<route>-title` and `custom-notice-<route>-purpose` (no variables).

## The notice

notice-default-title = How an automated model takes part in this decision
notice-default-purpose = An automated model helps us decide on requests like yours. This page says what it uses, what we keep, and what you can do.
notice-uses-heading = The information it uses
notice-uses = The model is given this information from your request:
# $count: how many more details the model is given that are not named to customers.
notice-uses-hidden = { $count ->
    [one] and one more technical detail.
   *[other] and { $count } more technical details.
}
notice-protected-heading = Sensitive information
notice-protected = Your explanation never refers to the following information, and it is not used to explain decisions:
notice-protected-given = The model may be given some of this information with your request.
notice-fairness-monitored = We check regularly that decisions are not less favourable for any group of people described by this information.
notice-fairness-unmonitored = There is no automatic check of decisions across these groups on this service.
# $date: the day of the latest check.
notice-fairness-fair = The latest check ({ $date }) found no group treated markedly less favourably than the others.
# $date: the day of the latest check.
notice-fairness-disparity = The latest check ({ $date }) found a group treated less favourably than the others.
notice-fairness-reviewed = Decisions about people in a group found treated less favourably are checked by a person.
notice-fairness-none = No check has been completed yet.
notice-reasons-heading = Reasons we may give
notice-reasons = When a request is declined, we tell you its main reasons, from this list:
notice-explanations = With each decision you receive its main reasons in plain words, and, where possible, what you could change.
notice-record-heading = What we keep
# $days: how long records are kept.
notice-record-kept = We keep a record of each decision, what it was based on and the explanation you received, for { $days ->
    [one] one day
   *[other] { $days } days
}, then erase it.
notice-record-kept-until-erased = We keep a record of each decision, what it was based on and the explanation you received, until you ask us to erase it.
# $count: how many details are kept only in reduced or pseudonymous form.
notice-record-minimised = { $count ->
    [one] One detail is kept only in a reduced or pseudonymous form.
   *[other] { $count } details are kept only in a reduced or pseudonymous form.
}
notice-record-encrypted = Records are encrypted where they are stored, and protected against alteration.
notice-record-none = This service keeps no record of decisions.
notice-choices-heading = Your choices
notice-consent-default-granted = Unless you tell us otherwise, your request may also be used to improve how decisions are explained.
notice-consent-default-denied = Your request is used to improve how decisions are explained only if you agree to it.
notice-consent-how = You can make this choice when you send your request, and ask us at any time to erase your records.
notice-access = You can ask us for a copy of every decision about you, with its explanation.
notice-review-heading = A person can look at your decision
notice-review-rules = Some decisions are checked by a person, for example when the model is unsure.
# $days: how long after a decision it can be contested.
notice-contest = You can contest a decision within { $days ->
    [one] one day
   *[other] { $days } days
}, with the reference you received. A person then reviews it, and you can follow the result.
notice-contest-offline = To have a decision reviewed by a person, contact us.
# $date: when the notice was made.
notice-generated = This notice was made on { $date } from the service's current settings.

## Contesting a decision

contest-received = We have received your request. A person will review the decision, and you can follow the result with the same reference.
contest-pending = A person is reviewing the decision.
contest-confirmed = A person has reviewed the decision and confirmed it.
contest-overridden = A person has reviewed the decision and changed it.
contest-unknown = We cannot find a decision for this reference.
# $days: how long after a decision it can be contested.
contest-closed = This decision can no longer be contested here: decisions can be contested within { $days ->
    [one] one day
   *[other] { $days } days
}.
contest-erased = The record of this decision has been erased.
contest-already = This decision has already been contested.
contest-unavailable = This decision cannot be contested here. Please contact us.
# $max: the most characters a reason may have.
contest-reason-needed = Please tell us why you contest the decision, in at most { $max } characters.
contest-not-contested = This decision has not been contested.

## The printable answer to a subject access request

# $subject: the person's pseudonym.
access-title = Decisions about { $subject }
# $count: how many records; $date: when the answer was made.
access-summary = { $count ->
    [one] One record, as of { $date }.
   *[other] { $count } records, as of { $date }.
}
access-truncated = Only the first records are listed here; ask us for the rest.
access-when = When
access-service = Service
access-consent = Consent
access-request = Your request, as recorded
access-explanation = Explanation
# $why: why no explanation was given (a technical reason).
access-no-explanation = None was given ({ $why }).
access-reasons = Reasons given
access-information = Information the explanation is about
access-review = Review
access-by-you = by you
access-by-reviewer = by a reviewer
access-outcome = Outcome reported
# $date: when the record was erased.
access-erased = This record was erased on { $date }.
