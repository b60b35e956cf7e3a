"""The Functions app: registers one blueprint per function, nothing else."""

import azure.functions as func

from functions.admin import bp as admin
from functions.contacts import bp as contacts
from functions.conversations import bp as conversations
from functions.desks import bp as desks
from functions.flush_outbox import bp as flush_outbox
from functions.health import bp as health
from functions.media import bp as media
from functions.poll_inbound import bp as poll_inbound
from functions.receive_sms import bp as receive_sms
from functions.reminders import bp as reminders
from functions.scheduled import bp as scheduled
from functions.send_sms import bp as send_sms
from functions.session import bp as session
from functions.sms_status import bp as sms_status
from functions.templates import bp as templates

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
BLUEPRINTS = (
    session,
    desks,
    send_sms,
    receive_sms,
    sms_status,
    conversations,
    media,
    health,
    flush_outbox,
    poll_inbound,
    admin,
    reminders,
    contacts,
    scheduled,
    templates,
)
for blueprint in BLUEPRINTS:
    app.register_functions(blueprint)
