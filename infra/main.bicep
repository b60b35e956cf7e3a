// The relay on Azure: a Linux Consumption function app (Python 3.11), its storage account (whose Table
// service is the relay's store), Application Insights and every app setting. Untested here: no Azure access.
targetScope = 'resourceGroup'

@description('Function app name; also prefixes the other resources.')
param appName string
param location string = resourceGroup().location

param twilioAccountSid string
@secure()
param twilioAuthToken string
@description('Our number in E.164; leave empty when using a Messaging Service.')
param twilioFromNumber string = ''
param twilioMessagingServiceSid string = ''
@description('ISO 3166 alpha-2 regions desks may text, e.g. US,CA.')
param allowedCountries string = 'US'

@secure()
param relaySigningKey string
@secure()
param relayAccessCode string

@description('The service publisher, e.g. mqtts://broker.example.org:8883; a comma list for a cluster')
param mqttUrl string
@description('What browsers connect to, e.g. wss://broker.example.org:8084/mqtt; a comma list for a cluster')
param mqttBrowserUrl string
param mqttUsername string = 'relay-service'
@secure()
param mqttPassword string = ''
@description('jwt, mosquitto-dynsec or rabbitmq (a cluster from infra/rabbitmq/; see docs/brokers.md)')
param mqttBrokerAccess string = 'jwt'
@description('rabbitmq only: the management API, one URL per node, comma-separated')
param rabbitmqManagementUrl string = ''
param rabbitmqManagementUsername string = 'relay-admin'
@secure()
param rabbitmqManagementPassword string = ''

@description('The public base URL Twilio calls; defaults to the app\'s own hostname.')
param publicBaseUrl string = 'https://${appName}.azurewebsites.net'

var storageName = toLower(take(replace('${appName}st', '-', ''), 24))

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageName
  location: location
  sku: { name: 'Standard_LRS' }
  kind: 'StorageV2'
  properties: {
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    supportsHttpsTrafficOnly: true
  }
}

var storageConnection = 'DefaultEndpointsProtocol=https;AccountName=${storage.name};EndpointSuffix=${environment().suffixes.storage};AccountKey=${storage.listKeys().keys[0].value}'

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: '${appName}-ai'
  location: location
  kind: 'web'
  properties: { Application_Type: 'web' }
}

resource plan 'Microsoft.Web/serverfarms@2023-12-01' = {
  name: '${appName}-plan'
  location: location
  sku: { name: 'Y1', tier: 'Dynamic' }
  kind: 'functionapp'
  properties: { reserved: true }
}

resource app 'Microsoft.Web/sites@2023-12-01' = {
  name: appName
  location: location
  kind: 'functionapp,linux'
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      linuxFxVersion: 'Python|3.11'
      ftpsState: 'Disabled'
      minTlsVersion: '1.2'
      healthCheckPath: '/api/health'
      appSettings: [
        { name: 'AzureWebJobsStorage', value: storageConnection }
        { name: 'FUNCTIONS_EXTENSION_VERSION', value: '~4' }
        { name: 'FUNCTIONS_WORKER_RUNTIME', value: 'python' }
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: insights.properties.ConnectionString }
        { name: 'TWILIO_ACCOUNT_SID', value: twilioAccountSid }
        { name: 'TWILIO_AUTH_TOKEN', value: twilioAuthToken }
        { name: 'TWILIO_FROM_NUMBER', value: twilioFromNumber }
        { name: 'TWILIO_MESSAGING_SERVICE_SID', value: twilioMessagingServiceSid }
        { name: 'ALLOWED_COUNTRIES', value: allowedCountries }
        { name: 'PUBLIC_BASE_URL', value: publicBaseUrl }
        { name: 'RELAY_SIGNING_KEY', value: relaySigningKey }
        { name: 'RELAY_ACCESS_CODE', value: relayAccessCode }
        { name: 'RELAY_STORE', value: storageConnection }
        { name: 'MQTT_URL', value: mqttUrl }
        { name: 'MQTT_BROWSER_URL', value: mqttBrowserUrl }
        { name: 'MQTT_USERNAME', value: mqttUsername }
        { name: 'MQTT_PASSWORD', value: mqttPassword }
        { name: 'MQTT_BROKER_ACCESS', value: mqttBrokerAccess }
        { name: 'RABBITMQ_MANAGEMENT_URL', value: rabbitmqManagementUrl }
        { name: 'RABBITMQ_MANAGEMENT_USERNAME', value: rabbitmqManagementUsername }
        { name: 'RABBITMQ_MANAGEMENT_PASSWORD', value: rabbitmqManagementPassword }
        { name: 'POLL_SCHEDULE', value: '*/30 * * * * *' }
      ]
    }
  }
}

output functionUrl string = 'https://${app.properties.defaultHostName}/api'
output inboundWebhook string = 'https://${app.properties.defaultHostName}/api/receive_sms'
